#!/usr/bin/env python3
"""peak_rss.py CMD...: run CMD (through sh, so redirections work), sample its memory from
/proc/PID/status every 5 ms and print wall time, peak RssAnon (anonymous memory: heap,
stacks) and peak VmRSS (which also counts pages of mmapped files, so it is not the measure
of what a process allocates). The sampled process is the shell's child when CMD is a single
command (sh execs it)."""
import os
import subprocess
import sys
import time


def status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("RssAnon", "VmRSS", "RssFile"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def main():
    cmd = " ".join(sys.argv[1:])
    start = time.monotonic()
    p = subprocess.Popen(["sh", "-c", "exec " + cmd])
    peak = {"RssAnon": 0, "VmRSS": 0, "RssFile": 0}
    while p.poll() is None:
        for k, v in status(p.pid).items():
            peak[k] = max(peak[k], v)
        time.sleep(0.005)
    wall = time.monotonic() - start
    print(f"wall {wall:.2f} s  peak RssAnon {peak['RssAnon'] / 1024:.1f} MB  peak VmRSS {peak['VmRSS'] / 1024:.1f} MB"
          f"  (file pages {peak['RssFile'] / 1024:.1f} MB)  exit {p.returncode}", file=sys.stderr)
    return p.returncode


if __name__ == "__main__":
    sys.exit(main())
