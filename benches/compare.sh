#!/usr/bin/env bash
# Compare rbuild with buildah, `tar | gzip -6` and `tar | pigz -p2 -6` on the same machine, in one run.
#
#   benches/compare.sh [CONTEXT]     # default: a fresh context from make-context.py (20,000 files, 300 MB)
#
# The Dockerfile is the context's own minus its RUN line (issue 3's benchmark). buildah pulls the base from a
# local registry (../shared/tools/registry.sh + base-images.sh); rbuild reads the same base from the OCI layout
# base-images.sh wrote. Each tool runs COLD (empty storage) RUNS times; the median is reported, then ratios
# against rbuild. Absolute seconds vary between machines; the ratios are the result.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${RBUILD_SHARED:-$here/../shared}
runs=${RUNS:-3}
work=$(mktemp -d /tmp/rbuild-compare.XXXX)
trap 'rm -rf "$work"; "$shared/tools/registry.sh" stop >/dev/null 2>&1 || true' EXIT

ctx=${1:-}
if [ -z "$ctx" ]; then
  ctx=$work/ctx
  python3 "$shared/tools/make-context.py" "$ctx" --files 20000 --mb 300 >/dev/null
fi
ctx=$(realpath "$ctx")
"$shared/tools/registry.sh" start >/dev/null
BASE_IMAGES_DIR=$work/bases "$shared/tools/base-images.sh" --push 127.0.0.1:5000 >/dev/null

grep -v '^RUN ' "$ctx/Dockerfile" > "$work/Dockerfile.peer"
sed "s#^FROM 127.0.0.1:5000/library/busybox:1.35#FROM oci-layout://$work/bases/busybox#" \
  "$work/Dockerfile.peer" > "$work/Dockerfile.rbuild"

(cd "$here" && cargo build --release --locked -q --bin rbuild)
rbuild=$here/target/release/rbuild

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_cmd() { # NAME CMD...: median wall seconds of RUNS cold runs
  local name=$1; shift
  for _ in $(seq "$runs"); do
    local t0 t1; t0=$(now); "$@" >/dev/null 2>&1; t1=$(now)
    python3 -c "print(float('$t1') - float('$t0'))"
  done | median > "$work/$name"
}
rb() { rm -rf "$work/store"; "$rbuild" --root "$work/store" -q -t bench:1 -f "$work/Dockerfile.rbuild" "$ctx"; }
rbz() { rm -rf "$work/store"; "$rbuild" --root "$work/store" -q --compression zstd -t bench:1 -f "$work/Dockerfile.rbuild" "$ctx"; }

cat "$ctx"/node_modules/*/package.json "$ctx"/* >/dev/null 2>&1 || true   # same warm page cache for all
rb   # warm-up
time_cmd rbuild rb
time_cmd rbuild-zstd rbz
time_cmd gzip sh -c "tar -C '$ctx' -c . | gzip -6 > '$work/x.gz'"
time_cmd pigz sh -c "tar -C '$ctx' -c . | pigz -p2 -6 > '$work/x.gz'"
for _ in $(seq "$runs"); do
  "$shared/tools/peers.sh" buildah "$ctx" "$work/Dockerfile.peer" | awk '/cold/ {print $3}'
done | median > "$work/buildah"

r=$(cat "$work/rbuild")
printf '%-22s %8s  %s\n' tool seconds "time / rbuild"
for n in rbuild rbuild-zstd pigz gzip buildah; do
  python3 -c "import sys; t=float(sys.argv[2]); print(f'{sys.argv[1]:<22} {t:8.2f}  {t/float(sys.argv[3]):.2f}x')" \
    "$n" "$(cat "$work/$n")" "$r"
done
echo "context: $(du -sh --apparent-size "$ctx" | cut -f1), $(find "$ctx" -type f | wc -l) files; cold builds, median of $runs"
