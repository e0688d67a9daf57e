#!/usr/bin/env bash
# The contract's checks (run by .ci/run): `buf lint` (proto/buf.yaml: STANDARD and COMMENTS — every message, field,
# enum and value documented) and `buf breaking` against the image of the last release (the newest
# proto/releases/*.binpb), so proto/saring/v1 only ever grows additively.
#
#   scripts/buf.sh                 lint and check against the last release
#   scripts/buf.sh release X.Y.Z   at a release: write proto/releases/X.Y.Z.binpb from the contract as it stands
#
# buf comes from the npm registry (@bufbuild/buf, pinned), installed once under ~/.cache/saring (outside the tree).
set -euo pipefail
cd "$(dirname "$0")/.."

BUF_VERSION=1.75.0
say() { printf 'buf: %s\n' "$*" >&2; }
cache="${XDG_CACHE_HOME:-$HOME/.cache}/saring/buf-$BUF_VERSION"
buf="$cache/node_modules/.bin/buf"
if [ ! -x "$buf" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    say "installing nodejs and npm (Debian packages)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  fi
  say "installing @bufbuild/buf@$BUF_VERSION from the npm registry into $cache"
  mkdir -p "$cache"
  npm install --no-audit --no-fund --silent --prefix "$cache" "@bufbuild/buf@$BUF_VERSION" >/dev/null
fi

if [ "${1:-}" = release ]; then
  version="${2:?usage: scripts/buf.sh release X.Y.Z}"
  (cd proto && "$buf" build -o "releases/$version.binpb")
  say "wrote proto/releases/$version.binpb: later contracts are checked against it"
  exit 0
fi

baseline=$(ls proto/releases/*.binpb | sort -V | tail -n 1)
(cd proto && "$buf" lint)
say "lint: every message, field, enum and value documented; names as proto/buf.yaml says"
(cd proto && "$buf" breaking --against "../$baseline")
say "breaking: nothing removed or changed since $(basename "$baseline" .binpb)"
