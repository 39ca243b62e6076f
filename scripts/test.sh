#!/usr/bin/env bash
# The one test command (README.md → "Tests"): installs what the tests need on a fresh Debian
# machine, then runs the whole suite and prints the conformance counts.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: real registry, image tools nobody here wrote, runtimes.
pkgs=(skopeo umoci runc docker-registry pigz busybox-static apache2-utils openssl uidmap util-linux git)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo build --locked --release --bin rbuild
cargo test --locked --release
cargo bench --locked --no-run -q
# The conformance counts, one line per corpus (fails CI when ../shared/conformance is missing).
cargo test --locked --release --test tests conformance -- --show-output 2>&1 | grep -E '^conformance |test result'
