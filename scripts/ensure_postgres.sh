#!/usr/bin/env bash
# The PostgreSQL tests (tests/test_postgres.py) start a private server from Debian's `postgresql`
# (initdb and pg_ctl; Debian keeps them in /usr/lib/postgresql/<version>/bin). Install it when it
# is missing: as root with apt-get, else with passwordless sudo; otherwise say so (the tests then
# skip, naming the reason). Only the binaries are used: no system cluster is configured or started.
set -uo pipefail
if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "ensure_postgres: PostgreSQL is not installed and this user cannot install it (apt-get install postgresql);" \
       "the PostgreSQL tests will be skipped" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_postgres: PostgreSQL is not installed and there is no apt-get here; the PostgreSQL tests will be skipped" >&2
  exit 0
fi
echo "ensure_postgres: installing Debian's postgresql for the PostgreSQL tests" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -qq postgresql >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq postgresql >/dev/null; } \
  || echo "ensure_postgres: could not install postgresql; the PostgreSQL tests will be skipped" >&2
exit 0
