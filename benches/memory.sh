#!/usr/bin/env bash
# Peak memory (RSS) of rbuild on the two contexts the limits name: one 4 GB file, and
# 200,000 small files (cold build, no-change rebuild, one file changed). Goal: under 200 MB
# each, whatever the context's size (layers and hashing stream).
#
#   benches/memory.sh [WORKDIR]      (WORKDIR default /tmp/rbuild-memory; needs ~5 GB)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/rbuild-memory}
mkdir -p "$work"
(cd "$here" && cargo build --release --locked -q --bin rbuild)
rbuild=$here/target/release/rbuild

if [ ! -f "$work/big/big.bin" ]; then
  mkdir -p "$work/big"
  # Incompressible-ish and sparse-free: 4 GiB of pseudo-random bytes.
  head -c 4294967296 /dev/urandom > "$work/big/big.bin"
  printf 'FROM scratch\nCOPY . /data/\n' > "$work/big/Dockerfile"
fi
if [ ! -f "$work/small/Dockerfile" ]; then
  python3 - "$work/small" <<'PY'
import os, sys
root = sys.argv[1]
for i in range(200_000):
    d = os.path.join(root, f"d{i // 1000 // 10:03d}", f"e{i // 1000 % 10:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}.txt"), "w") as f:
        f.write(f"file {i}\n" * (1 + i % 7))
open(os.path.join(root, "Dockerfile"), "w").write("FROM scratch\nCOPY . /data/\n")
PY
fi

peak() { # label, args...
  local label=$1; shift
  sync
  /usr/bin/time -f "%M" -o "$work/rss" "$rbuild" build -q "$@" >/dev/null
  printf '%-34s %6d MB\n' "$label" $(( $(cat "$work/rss") / 1024 ))
}
rm -rf "$work/st-big" "$work/st-small"
peak "4 GB file, cold" --root "$work/st-big" -t big:1 "$work/big"
peak "200,000 files, cold" --root "$work/st-small" -t small:1 "$work/small"
peak "200,000 files, no change" --root "$work/st-small" -t small:1 "$work/small"
echo "changed" >> "$work/small/d000/e00/f0.txt"
peak "200,000 files, one file changed" --root "$work/st-small" -t small:1 "$work/small"
rm -rf "$work/st-big" "$work/st-small"
