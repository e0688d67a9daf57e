#!/usr/bin/env bash
# Makes sure headless Chromium and ChromeDriver are installed for the console's browser tests
# (Debian packages chromium and chromium-driver: /usr/bin/chromium, /usr/bin/chromedriver). Idempotent.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
printf 'browser: installing chromium and chromium-driver\n' >&2
DEBIAN_FRONTEND=noninteractive apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
