#!/usr/bin/env bash
# The report's browser tests drive Debian's headless Chromium (package `chromium`).
# Install it when it is missing: as root with apt-get, else with passwordless sudo;
# otherwise say so (the browser tests then skip, naming the reason).
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
exec "$(dirname "$0")/install_debian_package.sh" ensure_chromium chromium "the report's browser tests"
