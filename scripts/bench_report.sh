#!/bin/sh
# bench_report.sh TSV DIR - turns the figures of a bench run into a table
# and a picture: DIR/ratios.md (markdown) and DIR/ratios.svg (gnuplot).
#
# TSV has one line per (figure, anchor): name, mproc's value, unit, the
# anchor's name, its value, its unit, the ratio (> 1: mproc ahead), tab
# separated, as scripts/bench.sh writes it.  The picture has one bar per
# line, from 1x to the ratio on a log scale - right and green when mproc is
# ahead, left and red when behind - with the 1x line marked.  Without
# gnuplot (Debian: gnuplot-nox; scripts/deps.sh bench installs it) the
# table is written and the picture skipped, with a note.
set -eu
tsv=$1
dir=$2
mkdir -p "$dir"
stamp="$(date -u +%Y-%m-%d), $(nproc) CPUs, $(uname -r)"

{
    echo "<!-- written by scripts/bench_report.sh from a make bench run: $stamp -->"
    echo "| figure | mproc | anchor (same run) | ratio |"
    echo "| --- | ---: | --- | ---: |"
    awk -F '\t' '{
        behind = $7 < 1
        printf "| `%s` | %.4g %s | `%s` %.4g %s | %s%sx%s |\n", $1, $2, $3, $4, $5, $6,
               behind ? "1/" : "", behind ? sprintf("%.3g", 1 / $7) : sprintf("%.3g", $7),
               behind ? " (behind)" : ""
    }' "$tsv"
} >"$dir/ratios.md"
echo "# bench_report: wrote $dir/ratios.md"

if ! command -v gnuplot >/dev/null 2>&1; then
    echo "# bench_report: no gnuplot (Debian: gnuplot-nox): $dir/ratios.svg not written" >&2
    exit 0
fi

# Bars from the top in the order of the run: y is minus the line number.
data=$(mktemp)
trap 'rm -f "$data"' EXIT
awk -F '\t' '{
    color = $7 >= 1 ? "0x2e8b57" : "0xcd5c5c"
    name = $1
    sub(/^mproc_/, "", name)
    printf "%d\t%s\t%s\t%s\t%.3gx\n", -NR, name " / " $4, $7, color, $7
}' "$tsv" >"$data"
n=$(wc -l <"$data")
# Room on the left for the longest label, in characters and pixels.
chars=$(awk -F '\t' 'length($2) > m { m = length($2) } END { print m + 3 }' "$data")
width=$((chars * 11 + 640))
lo=$(awk -F '\t' 'NR == 1 || $3 < m { m = $3 } END { print (m < 0.5 ? m / 2 : 0.25) }' "$data")
hi=$(awk -F '\t' 'NR == 1 || $3 > m { m = $3 } END { print (m > 2 ? m * 3 : 6) }' "$data")
height=$((n * 22 + 120))

gnuplot <<PLOT
set terminal svg size $width,$height dynamic noenhanced font "sans,11" background "white"
set output "$dir/ratios.svg"
set datafile separator "\t"
set title "mproc against its anchors (same run)"
set logscale x 10
set xrange [$lo:$hi]
set yrange [-$n - 0.7:-0.3]
set xlabel "ratio to the anchor, log scale (> 1: mproc ahead)\n$stamp"
set format x "%gx"
set grid xtics lc rgb "#dddddd"
set key off
set border 3
set tics nomirror
set lmargin $chars
set rmargin 8
set arrow from 1, graph 0 to 1, graph 1 nohead lw 2 lc rgb "black"
plot "$data" using (sqrt(\$3)):1:(\$3 >= 1 ? 1 : \$3):(\$3 >= 1 ? \$3 : 1):(\$1 - 0.35):(\$1 + 0.35):4:ytic(2) \
         with boxxyerror fill solid 0.8 lc rgb variable, \
     "$data" using (\$3 >= 1 ? \$3 : 1):1:5 with labels left offset 0.6,0 font "sans,9"
PLOT
echo "# bench_report: wrote $dir/ratios.svg"
