#!/bin/sh
# mpi_launch.sh - the ctest entries that run test programs and examples
# under a launcher (label mpi; tests/CMakeLists.txt):
#
#   mpi_launch.sh ok CMD...            CMD (a launcher and its program) ends
#                                      with status 0: every rank passed
#   mpi_launch.sh dies MARKER CMD...   CMD ends, not with 0, within the ctest
#                                      limit (a rank was killed), and no
#                                      process whose command line holds
#                                      MARKER is left behind
#   mpi_launch.sh same N EXE MPRUN MPIEXEC [OPTION...]
#                                      EXE prints the same lines, in any
#                                      order, under `MPRUN -n N` and under
#                                      `MPIEXEC OPTION... -n N` (apart from
#                                      the engine's name)
set -u

# The processes whose command line holds $1, but for this script (and its
# subshells, which have its command line).
left_behind() {
    for p in $(pgrep -f -- "$1"); do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = sh ] || echo "$p"
    done
}

mode=$1
shift
case $mode in
ok)
    exec "$@"
    ;;
dies)
    marker=$1
    shift
    "$@"
    rc=$?
    if [ "$rc" -eq 0 ]; then
        echo "mpi_launch: the job ended with status 0, though a rank was killed" >&2
        exit 1
    fi
    # The launcher has returned; its ranks may take a moment to be reaped.
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        left=$(left_behind "$marker")
        [ -z "$left" ] && { echo "mpi_launch: job ended ($rc), nothing left"; exit 0; }
        sleep 0.5
    done
    echo "mpi_launch: processes left behind:" >&2
    for p in $left; do tr '\0' ' ' <"/proc/$p/cmdline" >&2; echo >&2; done
    exit 1
    ;;
same)
    n=$1 exe=$2 mprun=$3 mpiexec=$4
    shift 4
    tmp=$(mktemp -d) || exit 1
    trap 'rm -rf "$tmp"' EXIT
    "$mprun" -n "$n" "$exe" >"$tmp/local.out" 2>&1 || { cat "$tmp/local.out"; exit 1; }
    "$mpiexec" "$@" -n "$n" "$exe" >"$tmp/mpi.out" 2>&1 || { cat "$tmp/mpi.out"; exit 1; }
    sed 's/engine: local/engine: ENGINE/' "$tmp/local.out" | sort >"$tmp/a"
    sed 's/engine: mpi/engine: ENGINE/' "$tmp/mpi.out" | sort >"$tmp/b"
    if ! diff -u "$tmp/a" "$tmp/b"; then
        echo "mpi_launch: $exe prints other lines under mpiexec than under mprun" >&2
        exit 1
    fi
    echo "mpi_launch: $(wc -l <"$tmp/a") lines alike"
    ;;
*)
    echo "mpi_launch: unknown mode $mode" >&2
    exit 2
    ;;
esac
