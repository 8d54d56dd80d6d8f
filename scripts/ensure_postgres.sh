#!/usr/bin/env bash
# The PostgreSQL tests (tests/test_postgres.py) start a private server from Debian's `postgresql`
# (initdb and pg_ctl; Debian keeps them in /usr/lib/postgresql/<version>/bin). Install it when it
# is missing: as root with apt-get, else with passwordless sudo; otherwise say so (the tests then
# skip, naming the reason). Only the binaries are used: no system cluster is configured or started.
set -uo pipefail
if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
exec "$(dirname "$0")/install_debian_package.sh" ensure_postgres postgresql "the PostgreSQL tests"
