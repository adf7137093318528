#!/usr/bin/env bash
# Build the edgefabric QUIC engine (native/quic) from Debian's packaged crates
# and install it as prebuilds/linux-x64/edgefabric-quic.node (issue 18).
#
#   scripts/build-quic-engine.sh           build, copy the .node into prebuilds/
#   scripts/build-quic-engine.sh --check   rebuild from source in a fresh target dir and fail if the
#                                          committed prebuilt differs from it (the build is reproducible:
#                                          two builds in different target dirs gave the same sha256); then
#                                          load the fresh build and run the echo slice against the
#                                          committed one in two processes (behaviour)
#
# Build cost: a fresh build is ~220 s of CPU (user 195 s + sys 23 s, measured); wall time depends on
# the cores free (45 min at load average ~25 on 2 shared cores, a few minutes on an idle machine).
#
# Needs (Debian 12): rustc cargo librust-quinn-dev librust-tokio-dev librust-rustls-dev
# (quinn 0.9.3, quinn-proto 0.9.2, quinn-udp, rustls 0.20.8, ring 0.16, tokio 1.24 land in
# /usr/share/cargo/registry; native/quic/.cargo/config.toml points cargo there, offline).
# Uses Debian's /usr/bin/cargo and /usr/bin/rustc even when a rustup toolchain is on PATH:
# the committed prebuilt is what that toolchain makes. Override with CARGO=… RUSTC=….
# The echo check needs dist/ (npm run build).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
crate="$root/native/quic"
prebuilt="$root/prebuilds/linux-x64/edgefabric-quic.node"
export CARGO="${CARGO:-/usr/bin/cargo}"
export RUSTC="${RUSTC:-/usr/bin/rustc}"
# Reproducible output: no absolute build paths in the binary, no build-specific ids.
export RUSTFLAGS="--remap-path-prefix=$crate=/edgefabric-quic --remap-path-prefix=/usr/share/cargo/registry=/registry --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo -C link-arg=-Wl,--build-id=none"
export SOURCE_DATE_EPOCH=0
export CARGO_INCREMENTAL=0

build () { # $1 = target dir
  local start=$SECONDS
  (cd "$crate" && "$CARGO" build --release --locked --offline --target-dir "$1" >&2)
  echo "build-quic-engine: cargo build took $((SECONDS - start)) s ($("$RUSTC" --version))" >&2
}

if [ "${1:-}" != "--check" ]; then
  [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || { echo "build-quic-engine: prebuilds are for linux-x64 only" >&2; exit 1; }
  build "$crate/target"
  mkdir -p "$(dirname "$prebuilt")"
  # Copy beside it, then rename: overwriting the file in place crashes any process that has it loaded.
  cp "$crate/target/release/libedgefabric_quic.so" "$prebuilt.tmp"
  mv -f "$prebuilt.tmp" "$prebuilt"
  sha256sum "$prebuilt"
  exit 0
fi

[ -f "$prebuilt" ] || { echo "build-quic-engine --check: no committed prebuilt at $prebuilt" >&2; exit 1; }
tmp=$(mktemp -d /tmp/edgefabric-quic-check.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
build "$tmp/target"
# Node loads native addons by the .node extension only.
fresh="$tmp/fresh.node"
cp "$tmp/target/release/libedgefabric_quic.so" "$fresh"
want=$(sha256sum < "$fresh" | cut -d' ' -f1)
have=$(sha256sum < "$prebuilt" | cut -d' ' -f1)
echo "build-quic-engine --check: fresh $want, committed $have" >&2
status=0
if [ "$want" != "$have" ]; then
  echo "build-quic-engine --check: FAIL: the committed prebuilt is not what this source builds (run scripts/build-quic-engine.sh and commit prebuilds/)" >&2
  status=1
fi
# Behaviour: the fresh build and the committed one must talk to each other (dial, streams, echo).
node "$root/scripts/quic-engine-echo.mjs" "$fresh" "$prebuilt" || status=1
exit $status
