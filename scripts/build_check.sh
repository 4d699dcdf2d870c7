#!/bin/sh
# build_check.sh [--install] CC TYPE... - builds everything (library, tests,
# examples, benchmarks) with compiler CC in each CMake build TYPE (Release,
# MinSizeRel, RelWithDebInfo, Debug) with warnings as errors, and fails if
# any step printed a warning all the same (the linker's, CMake's).
#
# --install: also installs each build into a scratch prefix, checks the
# files a packager ships are there, and runs the install_consumer test (a
# program built against the installed package, through find_package and
# through pkg-config).
#
# Build trees go to $BUILD_ROOT/CC-TYPE (default build-check/, beside
# build/); JOBS (default: the CPU count) builds in parallel.
set -eu
cd "$(dirname "$0")/.."

install=0
if [ "${1:-}" = --install ]; then
    install=1
    shift
fi
if [ $# -lt 2 ]; then
    echo "usage: $0 [--install] CC TYPE..." >&2
    exit 2
fi
cc=$1
shift
root=${BUILD_ROOT:-build-check}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

# check_installed PREFIX: what `cmake --install` must have put there.
check_installed() {
    for f in include/mproc.h include/mproc/common.h; do
        [ -f "$1/$f" ] || { echo "build_check: $f not installed" >&2; return 1; }
    done
    for pat in 'lib*/libmproc.so.[0-9]*' 'lib*/libmproc.a' 'lib*/pkgconfig/mproc.pc' \
        'lib*/cmake/mproc/mprocConfig.cmake' 'lib*/cmake/mproc/mprocConfigVersion.cmake'; do
        # shellcheck disable=SC2086
        set -- "$1" $1/$pat
        [ -e "$2" ] || { echo "build_check: nothing matches $pat" >&2; return 1; }
    done
}

for type in "$@"; do
    dir=$root/$cc-$type
    log=$root/$cc-$type.log
    mkdir -p "$root"
    echo "== build_check: $cc $type (log: $log)"
    start=$(date +%s)
    if ! { CC=$cc cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" -DMPROC_WERROR=ON &&
        cmake --build "$dir" -j "$jobs"; } >"$log" 2>&1; then
        grep -E -B2 -A8 '(error|warning):' "$log" | head -n 80 >&2 || tail -n 40 "$log" >&2
        echo "build_check: $cc $type: the build failed" >&2
        exit 1
    fi
    if grep -E -i 'warning' "$log" >&2; then
        echo "build_check: $cc $type: the build printed warnings" >&2
        exit 1
    fi
    if [ $install = 1 ]; then
        prefix=$(mktemp -d)
        cmake --install "$dir" --prefix "$prefix" >>"$log"
        check_installed "$prefix"
        rm -rf "$prefix"
        (cd "$dir" && ctest --output-on-failure -R '^install_consumer$') >>"$log" 2>&1 || {
            tail -n 40 "$log" >&2
            echo "build_check: $cc $type: the installed package does not work" >&2
            exit 1
        }
    fi
    echo "   ok in $(($(date +%s) - start)) s"
done
