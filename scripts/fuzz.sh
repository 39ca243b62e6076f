#!/usr/bin/env bash
# Fuzzes the frontend and the layer reader with cargo-fuzz (libFuzzer; needs a nightly
# toolchain and `cargo install cargo-fuzz`). Each target runs SECS seconds (default 600),
# seeded from the conformance corpus (read only: new inputs go to fuzz/corpus/TARGET, which
# is kept in the repository and replayed by `cargo test` in CI).
#   scripts/fuzz.sh [SECS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: rustup toolchain install nightly && cargo install cargo-fuzz" >&2
  exit 1
fi
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(dockerfile shell_lex dockerignore layer_tar)
conf=${RBUILD_CONFORMANCE_DIR:-../../shared/conformance}
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  seeds=()
  case $t in
    dockerfile) seeds=("$conf/dockerfile-parser" "$conf/real-world") ;;
    shell_lex) seeds=("$conf/shell-lex") ;;
    dockerignore) seeds=("$conf/dockerignore") ;;
  esac
  existing=()
  for s in "${seeds[@]}"; do [ -d "$s" ] && existing+=("$s"); done
  echo "== $t: ${secs}s"
  log=$(mktemp)
  rc=0
  cargo +nightly fuzz run "$t" "corpus/$t" "${existing[@]}" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    >"$log" 2>&1 || rc=$?
  grep -E '^(#[0-9]+.*DONE|stat::|==|SUMMARY|.*panicked|Done)' "$log" || true
  # A run that never started (no nightly, no cargo-fuzz, a build error) must not look clean.
  if [ "$rc" -ne 0 ] && ! ls "artifacts/$t"/crash-* "artifacts/$t"/timeout-* >/dev/null 2>&1; then
    tail -20 "$log" >&2
    echo "$t: cargo fuzz failed (exit $rc) before fuzzing; see above" >&2
    exit 1
  fi
  rm -f "$log"
  # A crash leaves fuzz/artifacts/TARGET/crash-*: fail loudly.
  if ls "artifacts/$t"/crash-* "artifacts/$t"/timeout-* >/dev/null 2>&1; then
    echo "$t: crashes or timeouts in fuzz/artifacts/$t" >&2
    exit 1
  fi
done
