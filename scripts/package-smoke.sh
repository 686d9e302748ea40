#!/usr/bin/env bash
# Proves `npm install cluso-ws` works as a user gets it: packs the release tarballs
# (`npm run package`), installs them into a fresh app with no Rust toolchain on PATH and
# without the network, then there runs scripts/package-smoke/ (require, import, the client
# without the binary, a strict tsc, listen/subscribe/broadcast) on Node 20, 22 and 24.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

node scripts/check-packages.mjs
npm run package
tarballs=("$repo"/dist/*.tgz) # the root and this machine's platform package

app=$(mktemp -d "${TMPDIR:-/tmp}/cluso-ws-app-XXXXXX")
trap 'rm -rf "$app"' EXIT
cp scripts/package-smoke/* "$app/"
cd "$app"
echo '{ "name": "cluso-ws-smoke-app", "private": true, "type": "module" }' >package.json

# The app's own tools come from the registry (the npm cache, usually), at the repo's versions.
dev() { node -p "require('$repo/node_modules/$1/package.json').version"; }
npm install --no-audit --no-fund --prefer-offline \
  "typescript@$(dev typescript)" "@types/node@$(dev @types/node)" "ws@$(dev ws)" "@types/ws@$(dev @types/ws)"

# From here on: no cargo / rustc / rustup, and cluso-ws comes only from the tarballs.
PATH=$(printf %s "$PATH" | tr : '\n' | grep -v -e '/\.cargo/' -e rustup | paste -sd: -)
export PATH
if command -v cargo || command -v rustc; then echo "a Rust toolchain is still on PATH" >&2; exit 1; fi
npm install --offline --no-audit --no-fund "${tarballs[@]}"
ls node_modules | grep cluso-ws

node node_modules/typescript/bin/tsc -p tsconfig.json
echo "tsc --strict: ok"
timeout 60 node smoke.mjs
timeout 120 npx -y -p node@22 node smoke.mjs
timeout 120 npx -y -p node@24 node smoke.mjs

for t in "${tarballs[@]}"; do printf '%s\t%s bytes\n' "$(basename "$t")" "$(stat -c %s "$t")"; done
