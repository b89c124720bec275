//! The engine's pieces against a scripted peer on a loopback socket (no Redis server):
//! routing keeps each key on its connection, the low-water mark waits for the oldest
//! unanswered unit, a lost connection heals by sending its units again, and a snapshot
//! batch for twemproxy holds no command of the keys it refuses.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::dest::{Destination, Standalone, Twemproxy};
use super::engine::{Engine, Origin};
use super::report::Report;
use super::snapshot::SnapshotMap;
use super::*;
use crate::input::{Batch, Map};

/// What the scripted peer does.
#[derive(Default)]
struct Script {
    /// Replies go out only while this is set (commands are read and recorded anyway).
    hold: AtomicBool,
    /// Close the first connection without replying once it has read this many commands.
    close_after: Option<usize>,
}

/// A peer that speaks just enough RESP: PING → PONG, GET → nil, everything else → OK.
/// It records every command it read, per connection, in order of arrival.
struct Peer {
    port: u16,
    seen: Arc<Mutex<Vec<Vec<Vec<u8>>>>>,
    script: Arc<Script>,
}

impl Peer {
    fn start(script: Script) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let connections = Arc::new(AtomicUsize::new(0));
        let (s, sc) = (seen.clone(), script.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let n = connections.fetch_add(1, Ordering::SeqCst);
                s.lock().unwrap().push(Vec::new());
                let (s, sc) = (s.clone(), sc.clone());
                std::thread::spawn(move || serve(stream, n, &s, &sc));
            }
        });
        Peer { port, seen, script }
    }

    /// Commands of connection `conn` (in the order accepted), by their bytes.
    fn commands(&self) -> Vec<Vec<Vec<u8>>> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(mut stream: TcpStream, conn: usize, seen: &Mutex<Vec<Vec<Vec<u8>>>>, script: &Script) {
    let mut buf = Vec::new();
    let mut read = 0;
    let mut chunk = [0u8; 64 << 10];
    let mut pending = Vec::new();
    loop {
        let mut at = 0;
        while let Some(c) = crate::resp::command_at(&buf, at) {
            let reply: &[u8] = match c.name.to_ascii_uppercase().as_slice() {
                b"PING" => b"+PONG\r\n",
                b"GET" => b"$-1\r\n",
                _ => b"+OK\r\n",
            };
            seen.lock().unwrap()[conn].push(buf[at..c.end].to_vec());
            read += 1;
            at = c.end;
            if conn == 0 && script.close_after.is_some_and(|n| read >= n) {
                return; // dropped: the connection closes with these commands unanswered
            }
            pending.extend_from_slice(reply);
        }
        buf.drain(..at);
        while script.hold.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        }
        if stream.write_all(&pending).is_err() {
            return;
        }
        pending.clear();
        stream.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

fn config(port: u16) -> Config {
    Config {
        endpoint: Endpoint { host: "127.0.0.1".into(), port, user: None, password: None, tls: None },
        connections: None,
        window: None,
        window_bytes: 1 << 20,
        kind: None,
        target_version: None,
        mode: None,
        translate: translate::Config::default(),
        filter: Filter::default(),
        plan: Plan::sequential(),
        db_map: BTreeMap::new(),
        on_existing: OnExisting::Replace,
        allow_flush: false,
        precheck: false,
        dry_run: false,
        retry_for: Duration::from_secs(5),
        timeout: Duration::from_secs(5),
        progress: false,
        checkpoint: None,
        checkpoint_every: Duration::from_secs(1),
        keep_marks: false,
        source_dbs: None,
    }
}

/// `SET key v` as one unit at `offset`, routed to its key's connection.
fn set(e: &mut Engine<'_>, key: &str, offset: u64) {
    let mut cmd = Vec::new();
    crate::resp::encode::command(&mut cmd, &[b"SET", key.as_bytes(), b"v"]);
    let conn = e.dest.conn_of(key.as_bytes());
    let pos = Position { file: 0, offset };
    e.route(conn, Some(0), &cmd, 0, &[cmd.len()], Origin { pos, resendable: true, slot: None });
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn routing_keeps_each_key_on_its_connection_and_the_low_water_mark_waits() {
    let peer = Peer::start(Script { hold: AtomicBool::new(true), close_after: None });
    let cfg = config(peer.port);
    let dest = Standalone { n: 2, db_map: BTreeMap::new() };
    let mut e = Engine::start(&cfg, &dest, 100, Report::default(), 1, None).unwrap();
    let keys: Vec<String> = (0..40).map(|i| format!("key:{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        set(&mut e, k, 10 * i as u64);
    }
    e.routed_to = Position { file: 0, offset: 400 };
    e.flush(0);
    e.flush(1);
    // Nothing answered: the mark stays at the first unit.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(e.low_water(), Position { file: 0, offset: 0 });
    peer.script.hold.store(false, Ordering::SeqCst);
    e.drain_all();
    assert_eq!(e.low_water(), Position { file: 0, offset: 400 }, "every unit answered");
    let report =
        e.finish(&Inputs { files: Vec::new(), allow_truncated: false, until: None, on_duplicate: Default::default() });
    assert_eq!((report.answered, report.reconnects), (40, 0), "{}", report.text());
    // Connections 0 and 1 are the engine's (the one after them deletes the applied keys).
    let seen = peer.commands()[..2].to_vec();
    for (conn, cmds) in seen.iter().enumerate() {
        let mut last = None;
        for c in cmds {
            let key = crate::resp::command_at(c, 0).and_then(|c| c.key).unwrap();
            assert_eq!(dest.conn_of(key), conn, "{} on connection {conn}", String::from_utf8_lossy(key));
            let i: usize = std::str::from_utf8(&key[4..]).unwrap().parse().unwrap();
            assert!(last.is_none_or(|l| l < i), "keys out of order on connection {conn}");
            last = Some(i);
        }
    }
    assert_eq!(seen.iter().map(Vec::len).sum::<usize>(), 40);
}

#[test]
fn a_lost_connection_heals_by_sending_its_units_again() {
    let peer = Peer::start(Script { hold: AtomicBool::new(false), close_after: Some(5) });
    let cfg = config(peer.port);
    let dest = Standalone { n: 1, db_map: BTreeMap::new() };
    let mut e = Engine::start(&cfg, &dest, 100, Report::default(), 1, None).unwrap();
    for i in 0..12 {
        set(&mut e, &format!("key:{i}"), i);
    }
    e.routed_to = Position { file: 0, offset: 12 };
    e.flush(0);
    e.drain_all();
    let report =
        e.finish(&Inputs { files: Vec::new(), allow_truncated: false, until: None, on_duplicate: Default::default() });
    assert_eq!(report.failure, None, "{}", report.text());
    assert_eq!((report.answered, report.reconnects), (12, 1), "{}", report.text());
    // The first connection read 5 commands and died; the second got them again (from the
    // first unanswered unit on) after its PING, and the rest.
    wait_for("the peer's record", || peer.commands().len() >= 2);
    let seen = peer.commands();
    assert_eq!(seen[0].len(), 5);
    let keys: Vec<String> = seen[1]
        .iter()
        .filter_map(|c| crate::resp::command_at(c, 0).and_then(|c| c.key))
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    let want: Vec<String> = (0..12).map(|i| format!("key:{i}")).collect();
    assert_eq!(keys, want, "every unit sent again from the first unanswered one, in order");
}

#[test]
fn a_twemproxy_batch_holds_no_command_of_the_keys_it_refuses() {
    let data = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/redis-7.0.rdb")).unwrap();
    let cfg = config(1);
    let mut db_map = BTreeMap::new();
    for db in 0..16 {
        db_map.insert(db, 0);
    }
    let dest = Twemproxy { n: 2, db_map };
    let existing = Default::default();
    let log_keys = crate::expiry::LogKeysOnce::new(Vec::new(), &cfg.filter, None);
    let tcfg = translate::Config { mode: Mode::Commands, keep_expired: true, ..translate::Config::default() };
    let map = SnapshotMap {
        cfg: &cfg,
        dest: &dest,
        tcfg,
        existing: &existing,
        log_keys: &log_keys,
        filter: cfg.filter.clone(),
        spare: Default::default(),
    };
    let (mut names, mut refused, mut keys) = (Vec::new(), 0, 0);
    crate::pipeline::run(
        &data,
        &Plan::sequential(),
        |header, span| map.snapshot(&Batch::new(0, header, span)),
        |b| {
            let (buf, ends, stats) = b.parts();
            let mut at = 0;
            for &end in ends {
                names.push(String::from_utf8_lossy(crate::resp::command_at(buf, at).unwrap().name).to_uppercase());
                at = end;
            }
            refused += stats.refused;
            keys += stats.keys;
            true
        },
    )
    .unwrap();
    assert!(refused > 0, "the fixture's streams are refused");
    assert!(keys >= 30, "the other keys are there: {keys}");
    for bad in ["XADD", "XSETID", "XGROUP", "XCLAIM", "FUNCTION"] {
        assert!(!names.iter().any(|n| n == bad), "{bad} in a batch for twemproxy");
    }
}
