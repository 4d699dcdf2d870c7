#!/bin/sh
# deps.sh WHAT... - installs what `make` needs, on Debian, when it is missing.
#   build   compiler, make, CMake, pkg-config (for the install test)
#   lint    cppcheck, clang-tidy, clang-format (make lint, make format)
#   bench   Python 3, for the anchors; gnuplot (gnuplot-nox), for the picture
#   parts   what the optional parts build against: clang (the fuzz target),
#           Open MPI, libsodium, libdw, doxygen
#   all     every set above (what CI installs)
# Idempotent, and quick when everything is there: it asks apt only about
# what is missing.  Needs root (or sudo) to install.
set -eu
[ $# -gt 0 ] || set -- build

have() { command -v "$1" >/dev/null 2>&1; }
# installed PACKAGE: whether dpkg has PACKAGE installed.
installed() {
    dpkg-query -W -f '${Status}\n' "$1" 2>/dev/null | grep -q ' installed$'
}

need=""
# want PACKAGE [COMMAND]: PACKAGE is missing unless COMMAND runs (a tool
# may come from elsewhere than Debian) or dpkg has it.  Without dpkg, only
# a missing command counts.
want() {
    if [ $# -gt 1 ] && have "$2"; then return 0; fi
    if have dpkg-query; then
        installed "$1" && return 0
    elif [ $# -lt 2 ]; then
        return 0
    fi
    case " $need " in *" $1 "*) ;; *) need="$need $1" ;; esac
}

for what in "$@"; do
    case $what in
    build | all)
        want gcc cc
        want libc6-dev
        want make make
        want cmake cmake
        want pkg-config pkg-config ;;
    esac
    case $what in
    lint | all)
        want cppcheck cppcheck
        want clang-tidy clang-tidy
        want clang-format clang-format
        want doxygen doxygen ;;
    esac
    case $what in
    bench | all)
        want python3 python3
        want gnuplot-nox gnuplot ;;
    esac
    case $what in
    parts | all)
        want clang clang
        want openmpi-bin mpiexec
        want libopenmpi-dev
        want libsodium-dev
        want libdw-dev
        want doxygen doxygen ;;
    build | lint | bench) ;;
    *)
        echo "deps.sh: unknown set '$what' (build, lint, bench, all)" >&2
        exit 2 ;;
    esac
done
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
if ! have apt-get; then
    echo "deps.sh: missing:$need - this is not Debian: install them by hand" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $need
