#!/usr/bin/env bash
# The one test command: starts the services the suite needs, then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh
bash scripts/browser.sh

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
