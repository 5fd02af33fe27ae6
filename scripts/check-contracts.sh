#!/usr/bin/env bash
# Contract checks that `npm test` runs first: buf format, buf lint, buf breaking against the
# main branch, and gen/ being exactly what `buf generate` makes from proto/.
set -euo pipefail
cd "$(dirname "$0")/.."
buf=node_modules/.bin/buf

$buf format --diff --exit-code
$buf lint

if git rev-parse --verify --quiet main >/dev/null && git cat-file -e main:proto 2>/dev/null; then
  $buf breaking --against ".git#branch=main"
else
  echo "buf breaking: skipped, there is no main branch with proto/ to compare against"
fi

fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
$buf generate -o "$fresh"
if ! diff -r gen "$fresh/gen" >/dev/null; then
  diff -r gen "$fresh/gen" | head -40 >&2 || true
  echo "gen/ is not what 'buf generate' makes from proto/: run 'npm run generate' and commit gen/" >&2
  exit 1
fi
echo "contracts: format, lint, breaking and gen/ are in order"
