#!/usr/bin/env bash
# The cache benchmark (issue 6): rbuild beside buildah and BuildKit on the same machine, in one run.
#
#   benches/cache.sh [a] [b] [c]        # default: all three workloads
#   PEERS="buildah docker" benches/cache.sh a   # which peers to run (default: buildah docker)
#
# Workloads: (a) a Node-style context from make-context.py (20,000 files, ~300 MB; package*.json first, then
# COPY . .), (b) the RUN-heavy Dockerfile (../shared/tools/bench/Dockerfile.run-heavy), (c) a 3-stage build on
# the Node context. For each, rbuild is timed: cold (empty store), no-change rebuild, rebuild after appending to
# one source file, and a fresh store with --cache-from the registry cache the cold build exported (twice: taking
# the image only, and writing it to an OCI directory, which downloads every layer). Peers run through
# ../shared/tools/peers.sh (cold, cached, touched). Bases come from a local registry on 127.0.0.1:5000.
# Ratios are the result; absolute seconds vary between machines.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${RBUILD_SHARED:-$here/../shared}
bases=${BASE_IMAGES_DIR:-/tmp/rbuild-base-images}
peers=${PEERS:-buildah docker}
work=$(mktemp -d /tmp/rbuild-cache-bench.XXXX)
trap 'rm -rf "$work"' EXIT
workloads=("$@"); [ ${#workloads[@]} -gt 0 ] || workloads=(a b c)

"$shared/tools/registry.sh" start >/dev/null
need_debian=0; for w in "${workloads[@]}"; do [ "$w" = b ] && need_debian=1; done
if ! skopeo inspect --tls-verify=false docker://127.0.0.1:5000/library/busybox:1.35 >/dev/null 2>&1 \
   || { [ $need_debian = 1 ] && ! skopeo inspect --tls-verify=false docker://127.0.0.1:5000/library/debian:bookworm-slim >/dev/null 2>&1; }; then
  flags=(--push 127.0.0.1:5000); [ $need_debian = 1 ] && flags=(--debian "${flags[@]}")
  BASE_IMAGES_DIR=$bases "$shared/tools/base-images.sh" "${flags[@]}" >/dev/null
fi
(cd "$here" && cargo build --release --locked -q --bin rbuild)
rbuild=$here/target/release/rbuild
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
# Dirty pages of the previous run are flushed first: writeback otherwise lands on whichever
# build comes next (seconds of noise on this machine kind).
timed() { local t0 t1; sync; t0=$(now); "$@" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; return 1; }; t1=$(now); secs "$t0" "$t1"; }

results=$work/results; : > "$results"
record() { echo "$1 $2 $3" >> "$results"; echo "  $1 $2: $3 s" >&2; }

bench() { # NAME CONTEXT DOCKERFILE TOUCH
  local name=$1 ctx=$2 df=$3 touch=$4 store=$work/store-$1 cache=127.0.0.1:5000/bench/cache:$1
  echo "== workload $name" >&2
  # Every tool starts with the context in the page cache (each reads it fully on its cold build).
  tar -C "$ctx" -cf - . > /dev/null
  record "$name" "rbuild-cold" "$(timed "$rbuild" --root "$store" -q -f "$df" -t "bench-$name:1" "$ctx")"
  for _ in 1 2 3; do
    timed "$rbuild" --root "$store" -q -f "$df" -t "bench-$name:1" "$ctx"
  done | sort -g | sed -n 2p | { read -r s; record "$name" "rbuild-cached" "$s"; }
  # Export the cache (a cached rebuild that pushes it), then build on fresh stores from it.
  record "$name" "rbuild-export" "$(timed "$rbuild" --root "$store" -q -f "$df" -t "bench-$name:1" \
    --cache-to "type=registry,ref=$cache,mode=max" "$ctx")"
  rm -rf "$work/fresh"
  record "$name" "rbuild-cachefrom" "$(timed "$rbuild" --root "$work/fresh" -q -f "$df" -t "bench-$name:1" \
    --cache-from "type=registry,ref=$cache" "$ctx")"
  rm -rf "$work/fresh" "$work/out"
  record "$name" "rbuild-cachefrom-oci" "$(timed "$rbuild" --root "$work/fresh" -q -f "$df" -t "bench-$name:1" \
    --cache-from "type=registry,ref=$cache" -o "type=oci,dest=$work/out" "$ctx")"
  echo "// $(date +%s%N)" >> "$ctx/$touch"
  record "$name" "rbuild-touched" "$(timed "$rbuild" --root "$store" -q -f "$df" -t "bench-$name:1" "$ctx")"
  # What a one-file rebuild compressed: the gzip members it could not copy.
  echo "// $(date +%s%N)" >> "$ctx/$touch"
  "$rbuild" --root "$store" -f "$df" -t "bench-$name:1" --progress plain "$ctx" 2>&1 >/dev/null \
    | grep -E 'DONE .*compressed' | sed 's/^/  /' >&2 || true
  rm -rf "$work/fresh" "$work/out" "$store"
  if [ "$name" != b ]; then  # the tools' floor for a context this size
    record "$name" "tar-pigz-p2" "$(timed sh -c "tar -C '$ctx' -cf - . | pigz -p2 -6 > /dev/null")"
    record "$name" "tar-sha256sum" "$(timed sh -c "tar -C '$ctx' -cf - . | sha256sum > /dev/null")"
  fi
  for p in $peers; do
    sync
    TOUCH=$touch "$shared/tools/peers.sh" "$p" "$ctx" "$df" 2>"$work/peer.err" | while read -r peer what s; do
      record "$name" "$peer-$what" "$s"
    done || { echo "  $p failed: $(tail -2 "$work/peer.err")" >&2; }
  done
}

mkctx() { python3 "$shared/tools/make-context.py" "$1" --files 20000 --mb 300 >/dev/null; }
for w in "${workloads[@]}"; do
  case $w in
  a) mkctx "$work/a"; f=$(cd "$work/a" && find src -name '*.js' | sort | sed -n 100p)
     bench a "$work/a" "$work/a/Dockerfile" "$f" ;;
  b) mkdir -p "$work/b"; echo "x" > "$work/b/input.txt"
     bench b "$work/b" "$shared/tools/bench/Dockerfile.run-heavy" input.txt ;;
  c) mkctx "$work/c"; f=$(cd "$work/c" && find src -name '*.js' | sort | sed -n 100p)
     cat > "$work/c.Dockerfile" <<'EOF'
FROM 127.0.0.1:5000/library/busybox:1.35 AS deps
WORKDIR /app
COPY package*.json ./
RUN wc -c package.json > /app/deps.txt
FROM deps AS build
COPY . .
RUN find /app/src -name '*.js' | wc -l > /app/count.txt
FROM 127.0.0.1:5000/library/busybox:1.35
COPY --from=deps /app/deps.txt /app/
COPY --from=build /app/count.txt /app/
COPY --from=build /app/src /app/src
CMD ["cat", "/app/count.txt"]
EOF
     bench c "$work/c" "$work/c.Dockerfile" "$f" ;;
  esac
done

python3 - "$results" <<'PY'
import sys, collections
r = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    w, k, s = line.split()
    r[w][k] = float(s)
for w, m in sorted(r.items()):
    print(f"\nworkload {w}")
    cold = m.get("rbuild-cold")
    for k, v in m.items():
        extra = ""
        if k.startswith("rbuild-") and cold:
            extra = f"  ({v/cold:.3f}x rbuild cold)"
        print(f"  {k:26} {v:8.3f} s{extra}")
    for case, peer_case in [("cold", "cold"), ("cached", "cached"), ("touched", "touched")]:
        mine = m.get(f"rbuild-{case}")
        for p in ("buildah", "buildkit"):
            theirs = m.get(f"{p}-{peer_case}")
            if mine and theirs:
                print(f"  {case:8} {p:9} / rbuild = {theirs/mine:6.1f}x")
    if cold and m.get("rbuild-cachefrom"):
        print(f"  cold / --cache-from fresh store = {cold/m['rbuild-cachefrom']:.1f}x (image only), "
              f"{cold/m['rbuild-cachefrom-oci']:.1f}x (with every layer downloaded)")
PY
