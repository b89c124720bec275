//! The network layer with real sockets: a scripted peer on a loopback port sends snapshot
//! transfers in both framings, in small writes with pauses, and the link reads them into
//! files in bounded memory; errors (early close, garbage, silence) are named; a real
//! redis-server answers `PSYNC ? -1` and its snapshot lands in a file that `check` passes.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::Duration;

use redis_migration::net::{Answer, BulkError, Endpoint, Framing, Link, Payload};
use redis_migration::resp::reply::Reply;

use crate::bad_input::LARGEST;
use crate::util::{run, testdata, RedisServer};

/// What the scripted peer does, in order.
enum Step {
    /// Write these bytes, cut into pieces of pseudo-random sizes with short pauses.
    Send(Vec<u8>),
    Pause(u64),
    /// Read until some bytes come (what the client sends after the payload), and keep them.
    Expect,
    /// Close the connection.
    Close,
}

/// A peer on 127.0.0.1 that plays `steps` to the first client, then closes; its handle
/// returns what it read at `Step::Expect`.
fn peer(steps: Vec<Step>) -> (u16, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        let mut rng = Rng(port as u64 * 7919 + 1);
        for step in steps {
            match step {
                Step::Send(bytes) => {
                    let mut at = 0;
                    let mut pieces = 0u32;
                    while at < bytes.len() {
                        let n = (1 + rng.next() as usize % 70_000).min(bytes.len() - at);
                        // A peer the client closed on stops writing.
                        if sock.write_all(&bytes[at..at + n]).is_err() {
                            return got;
                        }
                        at += n;
                        pieces += 1;
                        if pieces % 8 == 0 {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
                Step::Pause(ms) => std::thread::sleep(Duration::from_millis(ms)),
                Step::Expect => {
                    let mut buf = [0u8; 4096];
                    if let Ok(n) = sock.read(&mut buf) {
                        got.extend_from_slice(&buf[..n]);
                    }
                }
                Step::Close => break,
            }
        }
        let _ = sock.shutdown(std::net::Shutdown::Both);
        got
    });
    (port, handle)
}

/// xorshift64: reproducible bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn link_to(port: u16, timeout: Duration) -> Link {
    let ep = Endpoint { host: "127.0.0.1".into(), port, user: None, password: None, tls: None };
    Link::open(&ep, timeout).unwrap()
}

const MARK: &[u8; 40] = b"5d8c2a61f0e94b7b8e3a1c0d9f6e2b4a7c1d3e5f";

/// Keepalive newlines (bare and CRLF) with pauses, as a master preparing a snapshot sends
/// them; the header line comes cut in two writes.
fn preamble(header: &[u8]) -> Vec<Step> {
    let (a, b) = header.split_at(header.len() / 2);
    vec![
        Step::Send(b"\n".to_vec()),
        Step::Pause(30),
        Step::Send(b"\n".to_vec()),
        Step::Pause(30),
        Step::Send(b"\r\n".to_vec()),
        Step::Send(a.to_vec()),
        Step::Pause(20),
        Step::Send(b.to_vec()),
    ]
}

/// Reads a payload into a temp file; returns the result, the file's bytes, the progress
/// reports and the largest allocation made while reading.
fn read_into_file(link: &mut Link) -> (Result<Payload, BulkError>, Vec<u8>, Vec<u64>, usize) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let mut progress = Vec::with_capacity(1 << 16);
    LARGEST.with(|m| m.set(0));
    let r = link.read_bulk_payload(file.as_file_mut(), |n| {
        if progress.len() < progress.capacity() {
            progress.push(n)
        }
    });
    let largest = LARGEST.with(|m| m.get());
    let bytes = std::fs::read(file.path()).unwrap();
    (r, bytes, progress, largest)
}

/// Well under the payloads' sizes: the read buffer, the link's own, a little more.
const MEMORY_BOUND: usize = 1 << 20;

#[test]
fn bulk_length_framing_over_loopback() {
    let payload = Rng(11).bytes(6 << 20);
    let mut steps = preamble(format!("${}\r\n", payload.len()).as_bytes());
    // The payload, then the replication stream right behind it, as a disk-based
    // transfer sends it: the reader must leave the stream unread.
    let mut tail = payload.clone();
    tail.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    steps.push(Step::Send(tail));
    steps.push(Step::Expect);
    let (port, handle) = peer(steps);
    let mut link = link_to(port, Duration::from_secs(20));
    let (r, file, progress, largest) = read_into_file(&mut link);
    let got = r.unwrap();
    assert_eq!(got, Payload { bytes: payload.len() as u64, framing: Framing::Length(payload.len() as u64) });
    assert!(file == payload, "the file differs from the payload");
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "progress goes up");
    assert_eq!(progress.last(), Some(&(payload.len() as u64)));
    assert!(largest < MEMORY_BOUND, "allocated {largest} bytes at once for a {} byte payload", payload.len());
    // What follows the payload is still there to read.
    let ping =
        link.next_reply(|r| matches!(r, Reply::Array(Some(a)) if a[..] == [Reply::Bulk(Some(b"PING"))])).unwrap();
    assert!(ping, "the command after the payload was not read whole");
    link.send(b"+ok\r\n").unwrap();
    handle.join().unwrap();
}

#[test]
fn bulk_eof_framing_over_loopback() {
    let mut payload = Rng(12).bytes(5 << 20);
    // Near the end, bytes that look like the start of the mark, and one byte short of it.
    let n = payload.len();
    payload[n - 200..n - 161].copy_from_slice(&MARK[..39]);
    payload[n - 100..n - 60].copy_from_slice(&MARK[..]);
    payload[n - 100] ^= 1;
    payload[n - 25..].copy_from_slice(&MARK[..25]);
    let mut steps = preamble(&[&b"$EOF:"[..], MARK, b"\r\n"].concat());
    steps.push(Step::Send([&payload[..], MARK].concat()));
    // A master sends nothing after the mark until the replica's first ACK.
    steps.push(Step::Expect);
    let (port, handle) = peer(steps);
    let mut link = link_to(port, Duration::from_secs(20));
    let (r, file, progress, largest) = read_into_file(&mut link);
    let got = r.unwrap();
    assert_eq!(got, Payload { bytes: payload.len() as u64, framing: Framing::EofMark(*MARK) });
    assert!(file == payload, "the file differs from the payload");
    assert_eq!(progress.last(), Some(&(payload.len() as u64)));
    assert!(largest < MEMORY_BOUND, "allocated {largest} bytes at once for a {} byte payload", payload.len());
    link.send_command(&[b"REPLCONF", b"ACK", b"0"]).unwrap();
    let ack = handle.join().unwrap();
    assert!(ack.starts_with(b"*3\r\n$8\r\nREPLCONF\r\n"), "{:?}", String::from_utf8_lossy(&ack));
}

#[test]
fn bulk_eof_framing_of_short_payloads() {
    for len in [0, 1, 17, 39, 40, 41] {
        let payload = Rng(13 + len as u64).bytes(len);
        let mut steps = preamble(&[&b"$EOF:"[..], MARK, b"\r\n"].concat());
        // The mark cut in two writes.
        steps.push(Step::Send([&payload[..], &MARK[..20]].concat()));
        steps.push(Step::Pause(20));
        steps.push(Step::Send(MARK[20..].to_vec()));
        steps.push(Step::Expect);
        let (port, handle) = peer(steps);
        let mut link = link_to(port, Duration::from_secs(20));
        let (r, file, _, _) = read_into_file(&mut link);
        assert_eq!(r.unwrap().bytes, len as u64, "payload of {len} bytes");
        assert_eq!(file, payload, "payload of {len} bytes");
        link.close();
        handle.join().unwrap();
    }
}

/// Runs a peer playing `steps` and returns the error the reader ends with.
fn bulk_error(steps: Vec<Step>, timeout: Duration) -> BulkError {
    let (port, handle) = peer(steps);
    let mut link = link_to(port, timeout);
    let (r, _, _, _) = read_into_file(&mut link);
    link.close();
    handle.join().unwrap();
    r.expect_err("the read should fail")
}

#[test]
fn bulk_errors_are_named() {
    let body = Rng(14).bytes(300_000);

    let mut steps = preamble(b"$1000000\r\n");
    steps.extend([Step::Send(body.clone()), Step::Close]);
    let e = bulk_error(steps, Duration::from_secs(20));
    assert!(matches!(e, BulkError::Closed { received: 300_000, expected: Some(1_000_000) }), "{e:?}");
    assert_eq!(e.to_string(), "the connection closed after 300000 bytes of the payload (of 1000000)");

    let mut steps = preamble(&[&b"$EOF:"[..], MARK, b"\r\n"].concat());
    steps.extend([Step::Send(body.clone()), Step::Close]);
    let e = bulk_error(steps, Duration::from_secs(20));
    assert!(matches!(e, BulkError::Closed { received: 300_000, expected: None }), "{e:?}");

    let mut steps = preamble(b"");
    steps.extend([Step::Close]);
    let e = bulk_error(steps, Duration::from_secs(20));
    assert!(matches!(e, BulkError::Closed { received: 0, expected: None }), "{e:?}");

    let mut steps = preamble(b"+CONTINUE\r\n");
    steps.push(Step::Send(body.clone()));
    let e = bulk_error(steps, Duration::from_secs(20));
    assert!(matches!(&e, BulkError::Unexpected(l) if l == "+CONTINUE"), "{e:?}");

    // Garbage with no line end at all.
    let e = bulk_error(vec![Step::Send(vec![b'x'; 5000])], Duration::from_secs(20));
    assert!(matches!(&e, BulkError::Read { received: 0, .. }), "{e:?}");

    let e = bulk_error(preamble(b"-ERR can't BGSAVE\r\n"), Duration::from_secs(20));
    assert!(matches!(&e, BulkError::Aborted(m) if m == "ERR can't BGSAVE"), "{e:?}");

    let e = bulk_error(preamble(b"$12ab\r\n"), Duration::from_secs(20));
    assert!(matches!(&e, BulkError::BadLength(l) if l == "$12ab"), "{e:?}");

    // Silence longer than the link's timeout, mid-payload.
    let mut steps = preamble(b"$1000\r\n");
    steps.extend([Step::Send(body[..10].to_vec()), Step::Pause(1500)]);
    let e = bulk_error(steps, Duration::from_millis(300));
    assert!(matches!(e, BulkError::Timeout { received: 10 }), "{e:?}");
}

/// Reads the master's answer to PSYNC, skipping keepalive newlines.
fn fullresync(link: &mut Link) -> (String, u64) {
    loop {
        let line = link.read_line(1024).unwrap();
        if line.is_empty() {
            continue;
        }
        let line = String::from_utf8(line).unwrap();
        let mut words = line.split(' ');
        assert_eq!(words.next(), Some("+FULLRESYNC"), "{line}");
        let replid = words.next().unwrap().to_string();
        assert_eq!(replid.len(), 40, "{line}");
        return (replid, words.next().unwrap().parse().unwrap());
    }
}

/// `PSYNC ? -1` to a real server, both framings: the snapshot lands whole in a file that
/// starts with `REDIS` and passes `check`, and both files hold the same keys.
#[test]
fn psync_snapshot_from_a_real_server() {
    let fixture = testdata("redis-7.0.rdb");
    let server =
        RedisServer::start("7.0", Some(&fixture), &["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]);
    let dir = tempfile::tempdir().unwrap();
    let ep = Endpoint { host: "127.0.0.1".into(), port: server.port, user: None, password: None, tls: None };
    let mut printed = Vec::new();
    for diskless in [true, false] {
        if !diskless {
            let _: () =
                redis::cmd("CONFIG").arg("SET").arg("repl-diskless-sync").arg("no").query(&mut server.conn()).unwrap();
        }
        let mut link = Link::open(&ep, Duration::from_secs(30)).unwrap();
        if diskless {
            let ok = link.call(&[b"REPLCONF", b"capa", b"eof"]).unwrap();
            assert_eq!(ok, Answer::Simple("OK".into()));
        }
        link.send_command(&[b"PSYNC", b"?", b"-1"]).unwrap();
        let (_replid, _offset) = fullresync(&mut link);
        let path = dir.path().join(if diskless { "diskless.rdb" } else { "disk.rdb" });
        let mut file = std::fs::File::create(&path).unwrap();
        let mut last = 0;
        let got = link.read_bulk_payload(&mut file, |n| last = n).unwrap();
        link.close();
        drop(file);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(got.bytes, bytes.len() as u64);
        assert_eq!(last, got.bytes);
        match got.framing {
            Framing::EofMark(_) => assert!(diskless, "a disk-based transfer came with an EOF mark"),
            Framing::Length(n) => {
                assert!(!diskless, "a diskless transfer came with a length");
                assert_eq!(n, got.bytes);
            }
        }
        assert!(bytes.starts_with(b"REDIS"), "{path:?} starts with {:?}", &bytes[..bytes.len().min(9)]);
        let path = path.to_str().unwrap();
        let out = run(&["check", path]);
        assert_eq!(out.status.code(), Some(0), "check {path}: {}", String::from_utf8_lossy(&out.stdout));
        let out = run(&["print", path, "--format", "json", "-q"]);
        assert_eq!(out.status.code(), Some(0), "print {path}");
        printed.push(out.stdout);
    }
    assert!(!printed[0].is_empty());
    assert!(printed[0] == printed[1], "the two transfers hold different keys");
}
