//! Redis Cluster as a replay destination: real clusters on loopback (see
//! `util::RedisCluster`).

use std::time::Duration;

use redis_migration::net::cluster::Topology;
use redis_migration::net::Endpoint;

use crate::util::RedisCluster;

fn endpoint(port: u16) -> Endpoint {
    Endpoint { host: "127.0.0.1".into(), port, user: None, password: None, tls: None }
}

#[test]
fn cluster_topology_from_any_node() {
    let c = RedisCluster::start(3, 1);
    let masters: Vec<u16> = c.master_nodes().iter().map(|s| s.port).collect();
    assert_eq!(masters.len(), 3);
    for node in &c.nodes {
        let t = Topology::refresh([&endpoint(node.port)], Duration::from_secs(5)).unwrap();
        assert!(t.uncovered().is_empty());
        let mut got: Vec<u16> = t.masters.iter().map(|m| m.node.port).collect();
        got.sort_unstable();
        let mut want = masters.clone();
        want.sort_unstable();
        assert_eq!(got, want, "asked {}", node.port);
        assert!(t.masters.iter().all(|m| m.replicas.len() == 1 && m.node.id.len() == 40));
        // Where the cluster itself says a key lives.
        let mut con = node.conn();
        for key in ["a", "b", "{user}:1", "zzz"] {
            let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(&mut con).unwrap();
            let m = &t.masters[t.master_of(slot).unwrap()];
            let mut on =
                redis::Client::open(format!("redis://127.0.0.1:{}/", m.node.port)).unwrap().get_connection().unwrap();
            let n: i64 = redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot).query(&mut on).unwrap();
            assert!(n >= 0, "slot {slot} served by {}", m.node.port);
        }
    }
    // A dead node is passed over for the next one.
    let dead = crate::util::free_port();
    let t = Topology::refresh([&endpoint(dead), &endpoint(c.nodes[1].port)], Duration::from_secs(2)).unwrap();
    assert_eq!(t.masters.len(), 3);
}
