#!/bin/sh
# deps.sh WHAT - installs what `make` needs, on Debian, when it is missing.
#   build   compiler, make, CMake, pkg-config (for the install test)
#   bench   the above, plus Python 3 for the anchors
# Does nothing when everything is there.  Needs root (or sudo) to install.
set -eu
what=${1:-build}

need=""
have() { command -v "$1" >/dev/null 2>&1; }
have cc || need="$need gcc libc6-dev"
have make || need="$need make"
have cmake || need="$need cmake"
have pkg-config || need="$need pkg-config"
if [ "$what" = bench ]; then
    [ -x /usr/bin/python3 ] || need="$need python3"
fi
[ -z "$need" ] && exit 0

echo "deps.sh: installing:$need"
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif have sudo; then
    SUDO="sudo"
else
    echo "deps.sh: missing:$need - install them, or run as root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $need
