#!/bin/sh
# demo.sh BUILD_DIR - runs the tour of examples in order, each under a time
# limit, and fails if any example fails.
set -u
build=${1:-build}
dir="$build/examples"
status=0
for src in examples/[0-9][0-9]_*.c; do
    name=$(basename "$src" .c)
    echo
    echo "==== $name ===================================================="
    sed -n '2,/\*\//p' "$src" | sed -e 's/^ \* \{0,1\}//' -e '/^\/$/d' | head -n 12
    echo "----"
    # An example says how it is launched with a "demo: mprun -n N" line in
    # its top comment (the ranks examples); the others run as they are.
    set -- "$dir/$name"
    launch=$(sed -n 's/^ \* demo: mprun \(.*\)$/\1/p' "$src" | head -n 1)
    if [ -n "$launch" ]; then
        # shellcheck disable=SC2086 # the launcher's options are words
        set -- "$build/tools/mprun" $launch "$dir/$name"
    fi
    if ! timeout 120 "$@"; then
        echo "!!!! $name failed" >&2
        status=1
    fi
done
echo
if [ $status = 0 ]; then echo "tour complete: every example ran"; else echo "tour FAILED" >&2; fi
exit $status
