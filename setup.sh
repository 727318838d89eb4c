#!/usr/bin/env bash
# Weir's one set-up script: installs the Debian packages the build and the
# tests need (only those missing), configures and builds, then optionally
# serves the demo or runs every test.
#
#   ./setup.sh          install what is missing and build
#   ./setup.sh serve    ... then start the demo backend and Weir on the
#                       embedded default config (proxy on 127.0.0.1:8000)
#   ./setup.sh test     ... then run every test; ends with "N passed, N failed"
#
# Builds out of tree in build/ (or in the source tree when it was already
# configured there by hand). SANITIZERS=1 builds in build-asan/ with
# --enable-sanitizers (ASan + UBSan) instead. Environment: BUILD_DIR,
# CONFIGURE_FLAGS. Idempotent: a second run only rebuilds what changed.
set -euo pipefail

cd "$(dirname "$0")"
SRC_DIR=$(pwd)
if [ "${SANITIZERS:-0}" = 1 ]; then
  BUILD_DIR=${BUILD_DIR:-$SRC_DIR/build-asan}
  CONFIGURE_FLAGS=${CONFIGURE_FLAGS:---enable-sanitizers}
elif [ -f "$SRC_DIR/config.status" ]; then
  BUILD_DIR=${BUILD_DIR:-$SRC_DIR}   # configured in place by hand: build there
else
  BUILD_DIR=${BUILD_DIR:-$SRC_DIR/build}
fi
CONFIGURE_FLAGS=${CONFIGURE_FLAGS:-}
MODE=${1:-build}

PACKAGES=(
  build-essential autoconf automake libtool pkg-config
  libevent-dev libssl-dev libluajit2-5.1-dev libjansson-dev libjwt-dev libhiredis-dev
  libcmocka-dev libhttp-parser-dev libpcre2-dev zlib1g-dev libbrotli-dev
  python3 python3-jsonschema curl ca-certificates valgrind
  redis-server python3-jwt   # tests: a real Redis for weir.redis and rate-limiting; PyJWT tokens
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_missing() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    # Debian's redis-server starts its system service on install; the tests
    # start their own on free ports, so policy-rc.d (exit 101) keeps :6379 free.
    local policy=/usr/sbin/policy-rc.d added_policy=0 rc=0
    if [ ! -e "$policy" ]; then
      as_root sh -c "printf '#!/bin/sh\\nexit 101\\n' > $policy && chmod 755 $policy"
      added_policy=1
    fi
    as_root apt-get update -qq || rc=$?
    if [ "$rc" -eq 0 ]; then
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || rc=$?
    fi
    if [ "$added_policy" = 1 ]; then as_root rm -f "$policy"; fi
    if [ "$rc" -ne 0 ]; then echo "setup: apt-get failed ($rc)" >&2; exit 1; fi
  fi
}

build() {
  if [ ! -x "$SRC_DIR/configure" ] || [ "$SRC_DIR/configure.ac" -nt "$SRC_DIR/configure" ]; then
    (cd "$SRC_DIR" && autoreconf -fi >/dev/null)
  fi
  mkdir -p "$BUILD_DIR"
  cd "$BUILD_DIR"
  if [ ! -f Makefile ] || [ "$SRC_DIR/configure" -nt Makefile ] || \
     ! grep -qF -- "$CONFIGURE_FLAGS" config.status 2>/dev/null; then
    "$SRC_DIR/configure" $CONFIGURE_FLAGS >/dev/null
  fi
  make -j"$(nproc)" >/dev/null
}

install_missing
build

case "$MODE" in
  build)
    echo "setup: built $BUILD_DIR/gateway/weir"
    ;;
  serve)
    python3 "$SRC_DIR/examples/demo_backend.py" --host 127.0.0.1 --port 9080 &
    backend=$!
    trap 'kill $backend 2>/dev/null || true' EXIT
    echo "setup: demo backend on 127.0.0.1:9080; Weir on http://127.0.0.1:8000 (Ctrl-C stops)"
    echo "setup: try: curl -i http://127.0.0.1:8000/hello"
    "$BUILD_DIR/gateway/weir"
    ;;
  test)
    make -j"$(nproc)" check-build >/dev/null
    exec python3 "$SRC_DIR/tests/run.py" --builddir "$BUILD_DIR" --srcdir "$SRC_DIR"
    ;;
  *)
    echo "usage: $0 [build|serve|test]" >&2
    exit 2
    ;;
esac
