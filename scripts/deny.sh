#!/usr/bin/env bash
# cargo deny (run by .ci/run) with deny.toml: licences, bans (duplicate versions reported, OpenSSL refused),
# sources (crates.io only), and the RustSec advisories when their database is on this machine.
#
# cargo-deny is built once from crates.io (pinned, --locked) under ~/.cache/saring, outside the tree (a few minutes
# the first time). The advisory database is a git repository on github.com, which machines without internet
# access cannot fetch: there the advisories check is skipped and says so. Where github.com is reachable,
# `SARING_DENY_FETCH=1 scripts/deny.sh` fetches it first (into ~/.cargo/advisory-dbs, cargo-deny's default).
set -euo pipefail
cd "$(dirname "$0")/.."

DENY_VERSION=0.20.2
say() { printf 'deny: %s\n' "$*" >&2; }
root="${XDG_CACHE_HOME:-$HOME/.cache}/saring/cargo-deny-$DENY_VERSION"
deny="$root/bin/cargo-deny"
if [ ! -x "$deny" ]; then
  say "building cargo-deny $DENY_VERSION from crates.io into $root (once; a few minutes)"
  cargo install --quiet --locked --root "$root" cargo-deny --version "$DENY_VERSION"
fi

# cargo deny reads the metadata of every crate in Cargo.lock, those of other platforms too, offline: fetch them
# first (a build downloads only this platform's), or a fresh machine fails here.
cargo fetch --locked --quiet

if [ "${SARING_DENY_FETCH:-0}" = 1 ]; then
  "$deny" fetch db
fi
"$deny" --all-features --offline --locked check --hide-inclusion-graph licenses bans sources
say "licenses, bans and sources: as deny.toml says"
if ls "${CARGO_HOME:-$HOME/.cargo}"/advisory-dbs/*/crates >/dev/null 2>&1; then
  "$deny" --all-features --offline --locked check --hide-inclusion-graph advisories
  say "advisories: none unhandled in the local RustSec database"
else
  say "advisories: SKIPPED: no RustSec database on this machine (github.com unreachable); run with SARING_DENY_FETCH=1 where it is reachable"
fi
