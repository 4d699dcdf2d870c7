#!/bin/sh
# check_docs.sh - every public declaration has a reference entry.
#
# Runs doxygen over include/mproc.h and include/mproc/*.h with
# docs/Doxyfile.in (warnings only, no HTML) and fails on any warning: an
# undocumented function, type, field, enum value or macro, or a malformed
# comment.  Each warning names the header and line.  Doxygen says nothing
# about the members of a header that has no @file comment (it leaves the
# whole header out), so a header without one fails too.
#
# PENDING names headers whose comments are known to be incomplete: their
# warnings are printed but do not fail the check.  A pending header that has
# become clean fails it, so that the list only ever shrinks.
#
# Usage: scripts/check_docs.sh [SOURCE_DIR]   (needs doxygen, 1.9.4 or later)
set -eu

root=$(cd "${1:-$(dirname "$0")/..}" && pwd)
PENDING=""

if ! command -v doxygen >/dev/null 2>&1; then
    echo "check_docs: doxygen not found (Debian: apt-get install doxygen)" >&2
    exit 2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

sed -e "s|@MPROC_SOURCE_DIR@|$root|g" -e "s|@MPROC_DOCS_OUT@|$tmp|g" \
    -e "s|@MPROC_DOCS_WARN_LOG@|$tmp/warnings.log|g" -e "s|@PROJECT_VERSION@|check|g" \
    "$root/docs/Doxyfile.in" >"$tmp/Doxyfile"
echo "GENERATE_HTML = NO" >>"$tmp/Doxyfile"
(cd "$tmp" && doxygen Doxyfile >"$tmp/doxygen.out" 2>&1) || {
    cat "$tmp/doxygen.out" >&2
    echo "check_docs: doxygen failed" >&2
    exit 2
}

# One line per problem, paths relative to the source tree.
sed -n "s|^$root/||p" "$tmp/warnings.log" >"$tmp/all"
for h in "$root"/include/mproc.h "$root"/include/mproc/*.h; do
    grep -q '@file' "$h" || echo "${h#"$root"/}:1: warning: no @file comment: the reference leaves this header out" >>"$tmp/all"
done
sort -t: -k1,1 -k2,2n -u "$tmp/all" >"$tmp/sorted"

fail=0
: >"$tmp/pending"
while IFS= read -r line; do
    file=${line%%:*}
    case " $(echo $PENDING) " in
    *" $file "*) echo "$line" >>"$tmp/pending" ;;
    *) echo "$line"; fail=1 ;;
    esac
done <"$tmp/sorted"

if [ -s "$tmp/pending" ]; then
    echo "check_docs: pending headers (listed in PENDING, not failing):"
    sed 's/^/  /' "$tmp/pending"
fi
for f in $PENDING; do
    if ! grep -q "^$f:" "$tmp/pending"; then
        echo "check_docs: $f is fully documented now: remove it from PENDING in $0"
        fail=1
    fi
done
if [ $fail -ne 0 ]; then
    echo "check_docs: public declarations without a reference entry (see above)" >&2
    exit 1
fi
echo "check_docs: every public declaration outside PENDING is documented"
