#!/usr/bin/env bash
# Bench-only: make the prebuilt uWebSockets.js (npm @btc-vision/uwebsockets.js)
# load on glibc < 2.38 (Debian 12 has 2.36). Its binary needs only three
# GLIBC_2.38 symbols (__isoc23_sscanf/strtol/strtoul): we copy the package to
# bench/.uws/, mark the GLIBC_2.38 requirement weak in the copy, and build a
# shim defining the three symbols that the uws adapter is started with under
# LD_PRELOAD. Nothing here touches the product or the installed package.
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules/@btc-vision/uwebsockets.js ] || npm install --no-audit --no-fund
PKG=node_modules/@btc-vision/uwebsockets.js
OUT=.uws
ABI=$(node -p 'process.versions.modules')
ARCH=$(node -p 'process.platform + "_" + process.arch')
BIN="uws_${ARCH}_${ABI}.node"
rm -rf "$OUT" && mkdir -p "$OUT"
cp "$PKG/uws.js" "$PKG/package.json" "$OUT/"
GLIBC=$(ldd --version | head -1 | grep -oE '[0-9]+\.[0-9]+$' || echo 0)
NEEDS=$(objdump -T "$PKG/$BIN" | grep -c 'GLIBC_2\.38' || true)
if [ "$NEEDS" -gt 0 ] && [ "$(printf '%s\n2.38\n' "$GLIBC" | sort -V | head -1)" != "2.38" ]; then
  python3 uws-compat/weaken-verneed.py "$PKG/$BIN" "$OUT/$BIN" GLIBC_2.38
  gcc -O2 -shared -fPIC -o "$OUT/isoc23-shim.so" uws-compat/isoc23-shim.c
  echo "$PWD/$OUT/isoc23-shim.so" > "$OUT/preload"
else
  cp "$PKG/$BIN" "$OUT/$BIN"
  : > "$OUT/preload"
fi
LD_PRELOAD="$(cat "$OUT/preload")" node -e "require('./$OUT/uws.js'); console.log('uWebSockets.js loads (glibc $GLIBC)')"
