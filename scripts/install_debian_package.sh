#!/usr/bin/env bash
# install_debian_package.sh CALLER PACKAGE "WHAT NEEDS IT": install a Debian package for tests that use it, as root
# with apt-get, else with passwordless sudo; otherwise say so (those tests then skip, naming the reason). Exits 0.
set -uo pipefail
caller=$1 package=$2 needs=$3
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "$caller: $package is not installed and this user cannot install it (apt-get install $package); $needs will be skipped" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "$caller: $package is not installed and there is no apt-get here; $needs will be skipped" >&2
  exit 0
fi
echo "$caller: installing Debian's $package for $needs" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -qq "$package" >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "$package" >/dev/null; } \
  || echo "$caller: could not install $package; $needs will be skipped" >&2
exit 0
