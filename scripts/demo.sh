#!/usr/bin/env bash
# The whole job on this machine, nothing started by hand: a source redis-server loaded
# from testdata/redis-7.0.rdb and an empty destination, on free loopback ports; a small
# writer on the source; the original tool's command line (no subcommand) with --cutover:
# snapshot, stream, pause, drain, verify, go; then `inspect` of the spooled snapshot and
# `diff` of the two servers. Everything it starts is stopped at the end.
#
#   bash scripts/demo.sh
#
# Installs redis-server (Debian's package) when it is missing; builds the release binary
# (BIN=path uses that binary instead).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "== installing redis-server (Debian)"
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
if [ -z "${BIN:-}" ]; then
  cargo build --release -q
  BIN=$PWD/target/release/redis-migration
fi

W=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SRC=$(free_port)
DST=$(free_port)
cleanup() {
  rm -f "$W/writing"
  for p in "$W"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

start() { # name port [rdb]
  local dir=$W/$1
  mkdir -p "$dir"
  [ -n "${3:-}" ] && cp "$3" "$dir/dump.rdb"
  redis-server --bind 127.0.0.1 --port "$2" --dir "$dir" --dbfilename dump.rdb --save '' --appendonly no \
    --repl-diskless-sync-delay 0 --logfile "$dir/redis.log" --daemonize yes --pidfile "$W/$1.pid"
  until redis-cli -p "$2" ping 2>/dev/null | grep -q PONG; do sleep 0.1; done
  until redis-cli -p "$2" info persistence | grep -q "loading:0"; do sleep 0.1; done
}
start source "$SRC" testdata/redis-7.0.rdb
start destination "$DST"
echo "== source 127.0.0.1:$SRC ($(redis-cli -p "$SRC" dbsize) keys in db 0, from testdata/redis-7.0.rdb)," \
  "destination 127.0.0.1:$DST (empty)"

# A small writer: a counter, strings, a list, while the migration runs.
touch "$W/writing"
(
  i=0
  while [ -f "$W/writing" ]; do
    redis-cli -p "$SRC" MSET "demo:$((i % 50))" "$i" demo:last "$i" >/dev/null
    redis-cli -p "$SRC" INCR demo:counter >/dev/null
    redis-cli -p "$SRC" RPUSH demo:list "$i" >/dev/null
    i=$((i + 1))
    sleep 0.01
  done
) &
sleep 1

echo "== redis-migration -sip 127.0.0.1 -sport $SRC -dip 127.0.0.1 -dport $DST -rdb dump.rdb -aof appendonly.aof" \
  "-client 2 --cutover --pause-timeout 5000"
"$BIN" -sip 127.0.0.1 -sport "$SRC" -dip 127.0.0.1 -dport "$DST" -rdb "$W/dump.rdb" -aof "$W/appendonly.aof" \
  -client 2 --cutover --pause-timeout 5000 >"$W/verdict.txt" 2>"$W/migrate.err" &
MIGRATE=$!
# The writer stops as soon as the verdict is out: its last command, held by the pause,
# runs when the pause lifts, and the tool applies it in the second it goes on following.
until [ -s "$W/verdict.txt" ] || ! kill -0 $MIGRATE 2>/dev/null; do sleep 0.05; done
rm -f "$W/writing"
status=0
wait $MIGRATE || status=$?
cat "$W/verdict.txt"
cat "$W/migrate.err"
echo "(exit status $status)"
[ "$status" = 0 ] || exit "$status"

echo "== redis-migration inspect dump.rdb (the spooled snapshot)"
"$BIN" inspect "$W/dump.rdb" --top 5 | head -40

echo "== redis-migration diff redis://127.0.0.1:$SRC redis://127.0.0.1:$DST"
sleep 0.5
"$BIN" diff "redis://127.0.0.1:$SRC" "redis://127.0.0.1:$DST" --format text
