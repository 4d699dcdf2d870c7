#!/usr/bin/env bash
# bench.sh BUILD_DIR - runs mproc's benchmarks beside the anchors in
# ../shared/anchors, in the same run, and prints every figure with the
# anchor it is held against and the ratio.
#
# Each bench/bench_*.c program prints lines
#     bench <name> <value> <unit> <anchor>[,<anchor>...]
# and the anchors print
#     anchor <name> <value> <unit>
# The ratio is oriented so that > 1 means mproc is ahead: anchor/mproc for
# times (us, ns), mproc/anchor for rates and ratios.
#
# Environment:
#   BENCH='process queue'    only these benchmarks (bench_<name>), default all
#   ANCHOR_GROUPS='c py'     anchor groups to run (run_all.sh), default: c py,
#                            and mpi when mpirun is installed
#   ANCHORS_DIR=...          where the anchors are (default ../shared/anchors)
#   PAIRS=7                  rounds of the paired figures (0: none)
#   RESULTS_DIR=...          where the picture and the table go (default
#                            bench/results): ratios.svg and ratios.md, one bar
#                            and one row per figure (scripts/bench_report.sh)
set -u
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
anchors=${ANCHORS_DIR:-$root/../shared/anchors}
out=$(mktemp -d /tmp/mproc-bench.XXXXXX)
trap 'rm -rf "$out"' EXIT
: >"$out/placed" # figures held in one placement (the paired rounds)

if [ -z "${ANCHOR_GROUPS:-}" ]; then
    ANCHOR_GROUPS="c py"
    command -v mpirun >/dev/null 2>&1 && ANCHOR_GROUPS="$ANCHOR_GROUPS mpi"
fi

echo "# mproc benchmarks, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, $(uname -r)"
if [ -x "$anchors/run_all.sh" ]; then
    echo "# ---- anchors ($ANCHOR_GROUPS) from $anchors"
    # shellcheck disable=SC2086
    "$anchors/run_all.sh" $ANCHOR_GROUPS 2>&1 | tee "$out/anchors.log" | grep -a '^# .*trials' || true
else
    echo "# no anchors at $anchors: ratios will be missing" >&2
    : >"$out/anchors.log"
fi

# Open MPI's two-copy path (vader's copy-in/copy-out, single copy off):
# what mproc's pipelined path (single-copy reads refused) is held against.
if echo " $ANCHOR_GROUPS " | grep -q " mpi " && [ -x "$anchors/build/mpi_bench" ] &&
    [ -x "$anchors/mpi_run.sh" ] && { [ -z "${BENCH:-}" ] || echo " $BENCH " | grep -q " comm "; }; then
    echo "# ---- anchor mpi_c_bandwidth_MBps_copyinout (mpi_bench, btl_vader_single_copy_mechanism=none)"
    OMPI_MCA_btl_vader_single_copy_mechanism=none "$anchors/mpi_run.sh" 2 "$anchors/build/mpi_bench" 2>&1 |
        awk '$1 == "anchor" && $2 == "mpi_c_bandwidth_MBps" { $2 = $2 "_copyinout"; print }' |
        tee -a "$out/anchors.log"
fi

echo "# ---- mproc"
for prog in "$build"/bench/bench_*; do
    [ -x "$prog" ] || continue
    name=$(basename "$prog")
    name=${name#bench_}
    if [ -n "${BENCH:-}" ] && ! echo " $BENCH " | grep -q " $name "; then
        continue
    fi
    echo "# running bench_$name"
    timeout 600 "$prog" 2>&1 | tee -a "$out/mproc.log" | grep -a '^# .*trials' || echo "# bench_$name FAILED" >&2
done

# The MPI engine, launched as the anchors launch Open MPI (mpi_run.sh: the
# same MCA settings), against the same raw Open MPI figures.
comm="$build/bench/bench_comm"
if [ -x "$comm" ] && command -v mpirun >/dev/null 2>&1 && [ -x "$anchors/mpi_run.sh" ] &&
    { [ -z "${BENCH:-}" ] || echo " $BENCH " | grep -q " comm "; }; then
    echo "# running bench_comm --mpi (the MPI engine, under mpiexec)"
    for np in 2 4; do
        set -- --mpi
        [ "$np" -gt 2 ] && set -- --mpi bcast
        ANCHOR_MPI_TIMEOUT=300 "$anchors/mpi_run.sh" "$np" "$comm" "$@" 2>&1 |
            tee -a "$out/mproc.log" | grep -a '^# .*trials' || echo "# bench_comm --mpi -n $np FAILED" >&2
    done
fi

# Figures that follow placement, paired.  On a virtual machine the host
# may place the two CPUs close together (a cache line moves between them
# in ~40 ns) or far apart (~220 ns), and may change that between one
# program and the next: the anchors measured minutes earlier can have run
# in the other placement, and latency, bandwidth and broadcasts all follow
# it.  So the figures of both engines that have an Open MPI anchor are
# measured again in PAIRS rounds, each running raw Open MPI and then mproc
# back to back (2 ranks, then 4 on 2 CPUs; the MPI engine, the closest
# call, right after its anchor), and each side's median over
# the rounds replaces its single figure.  The message rate joins the
# rounds too (its anchor, ZeroMQ's, does not follow placement): its
# median over them.
#
# Placement.  The host also moves the CPUs within a round, so a probe
# (bench/placement.c, 0.1 s) measures the cache-line hand-off before and
# after each program, and the program's figures are marked with the
# placement both saw: near (under 25 ns), mid (under 120) or far, or
# none when they differ.  A figure is then held against its anchor in
# the placement where the two have the most runs in common (each side's
# median there), and only without a placement in common against the
# medians over all rounds.  Every round prints where each figure ran.
PAIRS=${PAIRS:-7}
probe="$build/bench/placement"

# placed CMD...: CMD's anchor and bench lines, each led by the placement
# the probe saw both before and after it, and the two hand-offs in ns
# (mid@41-38; see above).
placed() {
    local before after
    before=$("$probe" 2>/dev/null)
    "$@" 2>&1 | grep -a -E '^(anchor|bench) ' >"$out/prog"
    after=$("$probe" 2>/dev/null)
    awk -v a="$before" -v b="$after" '
        function where(ns) { return ns == "" ? "none" : ns < 25 ? "near" : ns < 120 ? "mid" : "far" }
        BEGIN { p = (where(a) == where(b) ? where(a) : "none") "@" a "-" b }
        { print p, $0 }' "$out/prog"
}
paired_names='_pingpong_us$|_bandwidth_MBps$|_bcast_(8B|1MiB)_us(_loop)?(_np4_oversub(_loop)?)?$|_msgs_per_s_1p1c$'
if [ "$PAIRS" -gt 0 ] && echo " $ANCHOR_GROUPS " | grep -q " mpi " && [ -x "$anchors/build/mpi_bench" ] &&
    [ -x "$comm" ] && { [ -z "${BENCH:-}" ] || echo " $BENCH " | grep -q " comm "; }; then
    echo "# ---- paired rounds ($PAIRS: raw Open MPI, then mproc, back to back)"
    [ -x "$probe" ] || probe=false
    for round in $(seq "$PAIRS"); do
        {
            placed "$anchors/mpi_run.sh" 2 "$anchors/build/mpi_bench"
            placed "$anchors/mpi_run.sh" 2 "$comm" --mpi
            placed "$comm" pingpong
            placed "$comm" bandwidth
            placed "$comm" msgrate
            placed "$anchors/mpi_run.sh" 4 "$anchors/build/mpi_bench" bcast np4_oversub
            placed "$comm" bcast
            placed env ANCHOR_MPI_TIMEOUT=300 "$anchors/mpi_run.sh" 4 "$comm" --mpi bcast
        } | awk -v re="$paired_names" '$3 ~ re' >"$out/round.$round"
        echo "# round $round:" "$(awk '{ printf "%s %s (%s)  ", $3, $4, $1 }' "$out/round.$round")"
    done
    # Each side's median over all rounds (paired) and, for each bench
    # figure, both sides' medians in the placement they share most
    # (placed: figure, anchor, its value there, placement, runs of each).
    cat "$out"/round.* | awk -v paired="$out/paired" -v placed="$out/placed" '
        function median(key, m,    i, j, t) {
            for (i = 1; i <= m; i++)
                for (j = i + 1; j <= m; j++)
                    if (v[key, j] < v[key, i]) { t = v[key, i]; v[key, i] = v[key, j]; v[key, j] = t }
            return m % 2 ? v[key, (m + 1) / 2] : (v[key, m / 2] + v[key, m / 2 + 1]) / 2
        }
        { k = $2 " " $3; n[k]++; v[k, n[k]] = $4 + 0; rest[k] = $5 " " $6
          split($1, at, "@"); kp = k " " at[1]; n[kp]++; v[kp, n[kp]] = $4 + 0 }
        END {
            split("near mid far", where, " ")
            for (k in n) {
                if (split(k, f, " ") != 2) continue
                print k, median(k, n[k]), rest[k] >paired
                if (f[1] != "bench") continue
                split(rest[k], r, " "); split(r[2], anchors, ",")
                a = "anchor " anchors[1]
                best = ""; most = 0; runs = 0
                for (i = 1; i <= 3; i++) {
                    p = where[i]; both = n[k " " p] < n[a " " p] ? n[k " " p] : n[a " " p]
                    if (both > most || (both == most && both > 0 && n[k " " p] + n[a " " p] > runs)) {
                        most = both; best = p; runs = n[k " " p] + n[a " " p]
                    }
                }
                if (best != "")
                    print f[2], anchors[1], median(k " " best, n[k " " best]), \
                        median(a " " best, n[a " " best]), best, n[k " " best], n[a " " best] >placed
            }
        }'
    sort -o "$out/paired" "$out/paired"
    grep -a '^anchor ' "$out/paired" >>"$out/anchors.log"
    # The paired medians replace the single run's lines of the same names;
    # a figure held in one placement takes its median there.
    awk 'FNR == NR { if ($1 == "bench") drop[$2] = 1; next } !($1 == "bench" && $2 in drop)' \
        "$out/paired" "$out/mproc.log" >"$out/mproc.unpaired"
    awk -v placed="$out/placed" '
        FILENAME == placed { val[$1] = $3; next }
        $1 == "bench" && ($2 in val) { $3 = val[$2] }
        { print }' "$out/placed" "$out/paired" | grep -a '^bench ' | cat "$out/mproc.unpaired" - >"$out/mproc.log"
    sed 's/^/# paired median (all rounds): /' "$out/paired"
    awk '{ printf "# held in one placement: %s %s vs %s %s (%s: %d and %d runs)\n", $1, $3, $2, $4, $5, $6, $7 }' \
        "$out/placed"
fi

echo
echo "# ==== figures (ratio > 1: mproc ahead)"
awk '
    FILENAME == placed { pv[$1, $2] = $4; next }
    FILENAME == anchors { if ($1 == "anchor") { av[$2] = $3; au[$2] = $4 } next }
    $1 == "bench" {
        n = split($5, list, ",")
        lower = ($4 == "us" || $4 == "ns" || $4 == "ms" || $4 == "s")
        if (n == 0 || $5 == "-") { printf "%-44s %12s %-7s (no anchor)\n", $2, $3, $4; next }
        for (i = 1; i <= n; i++) {
            a = list[i]
            if (!(a in av)) { printf "%-44s %12s %-7s vs %-40s (not measured)\n", $2, $3, $4, a; continue }
            x = (($2, a) in pv) ? pv[$2, a] : av[a]
            r = lower ? (x / $3) : ($3 / x)
            printf "%-44s %12s %-7s vs %-40s %12s %-7s ratio %8.2fx\n", $2, $3, $4, a, x, au[a], r
            printf "%s\t%s\t%s\t%s\t%s\t%s\t%.4g\n", $2, $3, $4, a, x, au[a], r >tsv
        }
    }
' tsv="$out/ratios.tsv" placed="$out/placed" anchors="$out/anchors.log" \
    "$out/placed" "$out/anchors.log" "$out/mproc.log"

results=${RESULTS_DIR:-$root/bench/results}
if [ -s "$out/ratios.tsv" ]; then
    "$root/scripts/bench_report.sh" "$out/ratios.tsv" "$results"
fi
