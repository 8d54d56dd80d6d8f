#!/usr/bin/env bash
# The report's browser tests drive Debian's headless Chromium (package `chromium`).
# Install it when it is missing: as root with apt-get, else with passwordless sudo;
# otherwise say so (the browser tests then skip, naming the reason).
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "ensure_chromium: chromium is not installed and this user cannot install it (apt-get install chromium);" \
       "the report's browser tests will be skipped" >&2
  exit 0
fi
echo "ensure_chromium: installing Debian's chromium for the report's browser tests" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -qq chromium >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null; } \
  || echo "ensure_chromium: could not install chromium; the report's browser tests will be skipped" >&2
exit 0
