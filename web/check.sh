#!/usr/bin/env bash
# CI check of the embedded web client (make web-check): installs web/'s
# locked dependencies, type-checks, runs the unit tests (Vitest), builds
# into a temporary directory and fails when the result differs from the
# committed bundle in internal/webclient/dist (run `make web` and commit).
set -euo pipefail
WEB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIST="$WEB_DIR/../internal/webclient/dist"
cd "$WEB_DIR"

command -v node >/dev/null || { echo "web-check: node is not installed" >&2; exit 1; }
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npx tsc --noEmit
npx vitest run --reporter=dot

OUT="$(mktemp -d "${TMPDIR:-/tmp}/luxchat-web.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT
npx vite build --logLevel=warn --outDir "$OUT"
if ! diff -r "$OUT" "$DIST" >"$OUT.diff" 2>&1; then
  echo "web-check: internal/webclient/dist is not what web/ builds; run 'make web' and commit the result:" >&2
  head -n 20 "$OUT.diff" >&2
  rm -f "$OUT.diff"
  exit 1
fi
rm -f "$OUT.diff"
echo "web-check: the committed bundle is what web/ builds"
