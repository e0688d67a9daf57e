#!/usr/bin/env bash
# Fuzzes saring with cargo-fuzz (libFuzzer): every target in fuzz/ (or the ones named) for SECONDS each (default
# 60), one after the other on one core, then minimises each corpus in place (cargo fuzz cmin). A crash leaves its
# input in fuzz/artifacts/TARGET/ and makes the script exit 1 after the other targets have run; turn it into a
# regression test (fuzz/regressions/TARGET/ is replayed by `cargo test`, see service/tests/it/fuzz_corpus.rs).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]        targets: validate_request event_log phone
#
# cargo-fuzz needs nightly rustc flags (-Zsanitizer, sanitizer coverage). With a nightly toolchain installed it is
# used (`cargo +nightly fuzz`); otherwise stable is asked to accept them with RUSTC_BOOTSTRAP=1. SANITIZER=none
# skips AddressSanitizer (faster; saring's own crates forbid unsafe code anyway).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(validate_request event_log phone)
fi
sanitizer="${SANITIZER:-address}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  cargo=(cargo +nightly)
else
  export RUSTC_BOOTSTRAP=1
  cargo=(cargo)
fi

echo "fuzz: $(nproc) cores, $(rustc +nightly --version 2>/dev/null || rustc --version), sanitizer $sanitizer, ${seconds} s per target" >&2
failed=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  echo "fuzz: $target" >&2
  if ! "${cargo[@]}" fuzz run --sanitizer "$sanitizer" "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
    failed+=("$target")
    continue
  fi
  "${cargo[@]}" fuzz cmin --sanitizer "$sanitizer" "$target" "corpus/$target" -- -max_len=4096
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]}: inputs in fuzz/artifacts/" >&2
  exit 1
fi
echo "fuzz: no crashes" >&2
