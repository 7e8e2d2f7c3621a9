#!/usr/bin/env bash
# Builds and runs the coverage-guided fuzz targets in fuzz/ (cargo-fuzz + libFuzzer) locally.
#
#   scripts/fuzz.sh                      every target, 60 s each, one after the other
#   scripts/fuzz.sh TARGET [SECONDS]     one target (see fuzz/fuzz_targets/)
#   MERGE=1 scripts/fuzz.sh TARGET S     then add what it found to fuzz/corpus/TARGET (only
#                                        inputs that add coverage beyond the committed seeds)
#   JOBS=2 ...                           libFuzzer worker processes (default 1)
#
# Works on a stable toolchain: cargo-fuzz needs a few -Z flags, allowed here by
# RUSTC_BOOTSTRAP=1, and runs without a sanitizer (safe Rust; the targets check invariants
# with assertions). New inputs go to fuzz/work/TARGET (not committed), crashes to
# fuzz/artifacts/TARGET/. The committed corpora are replayed by `cargo test --test fuzz_replay`.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

target=${1:-all}
seconds=${2:-60}
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

if [ "$target" = all ]; then
  targets=$(ls fuzz_targets | sed 's/\.rs$//')
else
  [ -f "fuzz_targets/$target.rs" ] || { echo "no fuzz target '$target'; have: $(ls fuzz_targets | sed 's/\.rs$//' | tr '\n' ' ')" >&2; exit 2; }
  targets=$target
fi

triple=$(rustc -vV | sed -n 's/^host: //p')
for t in $targets; do
  nice -n 10 cargo fuzz build --sanitizer none -O "$t"
  bin=target/$triple/release/$t
  mkdir -p "work/$t" "artifacts/$t" "corpus/$t"
  echo "== fuzzing $t for ${seconds}s"
  parallel=()
  if [ "${JOBS:-1}" -gt 1 ]; then parallel=(-jobs="$JOBS" -workers="$JOBS"); fi
  nice -n 19 "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
    -print_final_stats=1 "${parallel[@]}" \
    -artifact_prefix="artifacts/$t/" "work/$t" "corpus/$t"
  if [ "${MERGE:-0}" = 1 ]; then
    # Additive: the committed seeds stay; only inputs that add coverage beyond them are copied
    # in. A long run can add thousands: commit a few that matter, not the lot.
    nice -n 19 "$bin" -merge=1 -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
      "corpus/$t" "work/$t"
  fi
done
