#!/usr/bin/env bash
# Runs the test suite: installs the real servers it needs when missing, then cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-servers.sh
cargo test --all-targets "$@"
