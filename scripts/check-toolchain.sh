#!/usr/bin/env bash
# Keeps `rust-version` honest: see scripts/check_toolchain.py.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/check_toolchain.py
