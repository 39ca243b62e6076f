#!/usr/bin/env bash
# Push and pull of a ~300 MB image to a local registry: rbuild vs `skopeo copy`, in one run.
#
#   benches/registry.sh [CONTEXT]   # default: make-context.py --files 20000 --mb 300
#
# The image is built once by rbuild (FROM scratch, the context copied in; one ~180 MB gzip
# layer). Each tool then pushes it to an empty registry (so every byte goes up) and pulls it
# into empty storage. Medians of RUNS runs; ratios against rbuild.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${RBUILD_SHARED:-$here/../shared}
runs=${RUNS:-3}
port=${PORT:-5057}
reg=127.0.0.1:$port
work=$(mktemp -d /tmp/rbuild-regbench.XXXX)
trap 'REGISTRY_DIR=$work/registry "$shared/tools/registry.sh" stop --port "$port" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

ctx=${1:-}
if [ -z "$ctx" ]; then
  ctx=$work/ctx
  python3 "$shared/tools/make-context.py" "$ctx" --files 20000 --mb 300 >/dev/null
fi
REGISTRY_DIR=$work/registry "$shared/tools/registry.sh" start --port "$port" >/dev/null
(cd "$here" && cargo build --release --locked -q --bin rbuild)
rbuild=$here/target/release/rbuild
printf 'FROM scratch\nCOPY . /app\n' > "$work/Dockerfile"
"$rbuild" --root "$work/store" -q -t bench:v1 -o "type=oci,dest=$work/layout" -f "$work/Dockerfile" "$ctx" >/dev/null

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() { # prints the wall time of a command that must succeed
  local t0 t1; t0=$(now)
  "$@" >/dev/null 2>"$work/err" || { echo "failed: $* $(tail -2 "$work/err")" >&2; exit 1; }
  t1=$(now); python3 -c "print(float('$t1') - float('$t0'))"
}

# Every push goes to an empty registry, so every byte goes up (skopeo's blob-info cache would
# otherwise mount blobs it saw pushed before instead of uploading them).
fresh() {
  REGISTRY_DIR=$work/registry "$shared/tools/registry.sh" stop --port "$port" >/dev/null 2>&1 || true
  rm -rf "$work/registry"
  REGISTRY_DIR=$work/registry "$shared/tools/registry.sh" start --port "$port" >/dev/null
}
for i in $(seq "$runs"); do fresh; timed "$rbuild" push --root "$work/store" bench:v1 "$reg/rb:v1"; done | median > "$work/rb-push"
for i in $(seq "$runs"); do fresh; timed skopeo copy --dest-tls-verify=false "oci:$work/layout:v1" "docker://$reg/sk:v1"; done | median > "$work/sk-push"
for i in $(seq "$runs"); do rm -rf "$work/pull"; timed "$rbuild" pull --root "$work/pull" "$reg/sk:v1"; done | median > "$work/rb-pull"
for i in $(seq "$runs"); do rm -rf "$work/skpull"; timed skopeo copy --src-tls-verify=false "docker://$reg/sk:v1" "oci:$work/skpull:v1"; done | median > "$work/sk-pull"

size=$(du -sh --apparent-size "$work/layout/blobs" | cut -f1)
printf '%-8s %10s %10s  %s\n' op rbuild skopeo "skopeo time / rbuild time"
for op in push pull; do
  python3 -c "import sys; r=float(sys.argv[2]); s=float(sys.argv[3]); print(f'{sys.argv[1]:<8} {r:9.2f}s {s:9.2f}s  {s/r:.2f}x')" "$op" "$(cat "$work/rb-$op")" "$(cat "$work/sk-$op")"
done
echo "image: $size of blobs; median of $runs runs; local registry $reg"
