#!/bin/sh
# demo.sh BUILD_DIR - runs the tour of examples in order, each under a time
# limit, then the programs of examples/apps/ each beside its Python twin in
# examples/python/ (with /usr/bin/python3; skipped with a note without it),
# and prints their times side by side.  Fails if any program fails.
set -u
build=${1:-build}
dir="$build/examples"
python=${PYTHON:-/usr/bin/python3}
status=0
tmp=$(mktemp -d /tmp/mproc-demo.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# header FILE: the comment at the top of a C file, without its markers.
header() {
    sed -n '2,/\*\//p' "$1" | sed -e 's/^ \* \{0,1\}//' -e '/^\/$/d' | head -n "${2:-12}"
}

for src in examples/[0-9][0-9]_*.c; do
    name=$(basename "$src" .c)
    echo
    echo "==== $name ===================================================="
    header "$src"
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

# run LABEL OUT CMD...: runs CMD with its output shown and kept in OUT;
# prints the "time: S s" it reports to OUT.time.  Returns CMD's status.
run() {
    label=$1 out=$2
    shift 2
    { timeout 300 "$@"; echo $? >"$out.rc"; } | tee "$out"
    rc=$(cat "$out.rc")
    sed -n 's/^time: \([0-9.]*\) s$/\1/p' "$out" | tail -n 1 >"$out.time"
    if [ "$rc" != 0 ] || [ ! -s "$out.time" ]; then
        echo "!!!! $label failed ($rc)" >&2
        return 1
    fi
}

table=""
for src in examples/apps/*.c; do
    name=$(basename "$src" .c)
    echo
    echo "==== apps/$name ===================================================="
    header "$src" 16
    echo "---- C"
    run "apps/$name" "$tmp/$name.c" "$dir/apps/$name" || status=1
    ct=$(cat "$tmp/$name.c.time")
    pt=""
    if [ -x "$python" ]; then
        echo "---- Python twin: examples/python/$name.py"
        run "python/$name.py" "$tmp/$name.py" "$python" "examples/python/$name.py" || status=1
        pt=$(cat "$tmp/$name.py.time")
    fi
    table="$table$name ${ct:--} ${pt:--}
"
done

echo
echo "==== the programs' times, C beside Python (one run each, this machine)"
[ -x "$python" ] || echo "($python not found: the Python twins were skipped)"
printf '%s' "$table" | awk '
    BEGIN { printf "%-18s %10s %10s %10s\n", "program", "C", "Python", "Python/C" }
    {
        r = ($2 != "-" && $3 != "-" && $2 > 0) ? sprintf("%.0fx", $3 / $2) : "-"
        printf "%-18s %9s%s %9s%s %10s\n", $1, $2, ($2 == "-" ? " " : "s"), $3, ($3 == "-" ? " " : "s"), r
    }'
echo
if [ $status = 0 ]; then echo "demo complete: every program ran and checked its result"; else echo "demo FAILED" >&2; fi
exit $status
