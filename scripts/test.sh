#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with the Rust toolchain:
# installs what the tests need (idempotently), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/test-deps.sh
cargo build --locked --all-targets
cargo test --locked --all-targets
