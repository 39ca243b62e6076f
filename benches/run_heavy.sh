#!/usr/bin/env bash
# The RUN-heavy benchmark (../shared/tools/bench/Dockerfile.run-heavy): rbuild vs buildah, and
# both vs the same two commands run by hand in a chroot of the same Debian rootfs, in one run.
#
#   benches/run_heavy.sh
#
# Needs the Debian base (base-images.sh --debian, ~2 minutes the first time) in a local registry
# on 127.0.0.1:5000 (started here if needed). Cold builds (empty storage); ratios are the result.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${RBUILD_SHARED:-$here/../shared}
df=$shared/tools/bench/Dockerfile.run-heavy
bases=${BASE_IMAGES_DIR:-/tmp/rbuild-base-images}
work=$(mktemp -d /tmp/rbuild-runheavy.XXXX)
trap 'umount -R "$work/root" 2>/dev/null || true; rm -rf "$work"' EXIT

"$shared/tools/registry.sh" start >/dev/null
if [ ! -d "$bases/debian" ] || ! skopeo inspect --tls-verify=false docker://127.0.0.1:5000/library/debian:bookworm-slim >/dev/null 2>&1; then
  BASE_IMAGES_DIR=$bases "$shared/tools/base-images.sh" --debian --push 127.0.0.1:5000 >/dev/null
fi
(cd "$here" && cargo build --release --locked -q --bin rbuild)
rbuild=$here/target/release/rbuild
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$2"; }

# The commands alone: the two RUN lines in a chroot of the unpacked base.
mkdir -p "$work/root"
layer=$(python3 -c 'import json,sys; d=sys.argv[1]; i=json.load(open(d+"/index.json")); m=json.load(open(d+"/blobs/sha256/"+i["manifests"][0]["digest"][7:])); print(m["layers"][0]["digest"][7:])' "$bases/debian")
tar -xzf "$bases/debian/blobs/sha256/$layer" -C "$work/root"
mount --bind /dev "$work/root/dev"
cmds=()
while IFS= read -r line; do cmds+=("${line#RUN }"); done < <(grep '^RUN ' "$df")
t0=$(now)
for c in "${cmds[@]}"; do chroot "$work/root" /bin/sh -c "$c"; done
t1=$(now); plain=$(secs "$t0" "$t1")
umount "$work/root/dev"

# rbuild, cold.
mkdir -p "$work/ctx"
t0=$(now); "$rbuild" --root "$work/store" -q -t runheavy:1 -f "$df" "$work/ctx" >/dev/null; t1=$(now)
rb=$(secs "$t0" "$t1")

# buildah, cold (peers.sh prints "buildah cold N" and "buildah cached N").
bh=$("$shared/tools/peers.sh" buildah "$work/ctx" "$df" | awk '/cold/ {print $3}')

python3 - "$plain" "$rb" "$bh" <<'PY'
import sys
plain, rb, bh = map(float, sys.argv[1:])
print(f"{'':28} {'seconds':>8}  ratio")
print(f"{'commands alone (chroot)':28} {plain:8.2f}  1.00x")
print(f"{'rbuild cold':28} {rb:8.2f}  {rb/plain:.2f}x the commands")
print(f"{'buildah cold':28} {bh:8.2f}  {bh/plain:.2f}x the commands, {bh/rb:.2f}x rbuild")
PY
