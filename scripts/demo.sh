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
    if ! timeout 120 "$dir/$name"; then
        echo "!!!! $name failed" >&2
        status=1
    fi
done
echo
if [ $status = 0 ]; then echo "tour complete: every example ran"; else echo "tour FAILED" >&2; fi
exit $status
