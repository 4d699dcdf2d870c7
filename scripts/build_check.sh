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
# --no-dw: builds without libdw (-DMPROC_WITH_DW=OFF, build trees named
# CC-TYPE-nodw) and runs the crash report tests there: reports without
# source lines still name functions and modules.
#
# Build trees go to $BUILD_ROOT/CC-TYPE (default build-check/, beside
# build/); JOBS (default: the CPU count) builds in parallel.
set -eu
cd "$(dirname "$0")/.."

install=0
nodw=0
while :; do
    case ${1:-} in
    --install) install=1 ;;
    --no-dw) nodw=1 ;;
    *) break ;;
    esac
    shift
done
if [ $# -lt 2 ]; then
    echo "usage: $0 [--install] [--no-dw] CC TYPE..." >&2
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

suffix=""
extra=""
if [ $nodw = 1 ]; then
    suffix=-nodw
    extra=-DMPROC_WITH_DW=OFF
fi

for type in "$@"; do
    dir=$root/$cc-$type$suffix
    log=$root/$cc-$type$suffix.log
    mkdir -p "$root"
    echo "== build_check: $cc $type$suffix (log: $log)"
    start=$(date +%s)
    # shellcheck disable=SC2086
    if ! { CC=$cc cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" -DMPROC_WERROR=ON $extra &&
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
    if [ $nodw = 1 ]; then
        grep -q 'MPROC_HAVE_DW=OFF' "$log" || {
            echo "build_check: $cc $type$suffix: libdw was not left out" >&2
            exit 1
        }
        (cd "$dir" && ctest --output-on-failure -R '^report') >>"$log" 2>&1 || {
            tail -n 40 "$log" >&2
            echo "build_check: $cc $type$suffix: crash reports without libdw fail" >&2
            exit 1
        }
    fi
    echo "   ok in $(($(date +%s) - start)) s"
done
