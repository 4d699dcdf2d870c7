#!/bin/sh
# check_platform.sh - nothing above src/platform/ uses Linux (or glibc)
# directly: what is not portable POSIX goes through src/platform/platform.h.
#
# Fails, naming the file and the line, when a source file of src/ outside
# src/platform/ includes a header that only the platform layer may include,
# or uses a call, constant or path that only it may use.  Comments do not
# count (the compiler's preprocessor strips them); string literals count
# only for paths.
#
# Usage: scripts/check_platform.sh [SRC_DIR]
# Needs GCC's preprocessor (-fpreprocessed, which clang lacks): GCC_CPP
# names another GCC than `gcc`.
set -eu

src=${1:-$(dirname "$0")/../src}
gcc=${GCC_CPP:-gcc}
if ! "$gcc" -fpreprocessed -dD -E -x c /dev/null >/dev/null 2>&1; then
    echo "check_platform: $gcc cannot strip comments (-fpreprocessed): set GCC_CPP to a GCC" >&2
    exit 2
fi
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

# Headers for the platform layer alone.
headers='sys/prctl\.h|sys/signalfd\.h|sys/auxv\.h|sys/syscall\.h|ucontext\.h|link\.h'
headers="$headers"'|execinfo\.h|stdio_ext\.h|sys/eventfd\.h|sys/epoll\.h|sys/timerfd\.h'
headers="$headers"'|sys/inotify\.h|linux/[A-Za-z0-9_/]+\.h'

# Names for the platform layer alone (whole identifiers).
names='prctl|PR_SET_[A-Z_]+|signalfd|getauxval|AT_SECURE|syscall|SYS_[a-z_0-9]+|close_range'
names="$names"'|ucontext_t|REG_[RE]IP|MADV_REMOVE|PTHREAD_MUTEX_ADAPTIVE_NP|__fpurge'
names="$names"'|dl_iterate_phdr|dl_phdr_info|program_invocation_name|dup3|accept4'
names="$names"'|SO_PEERCRED|MSG_CMSG_CLOEXEC|memfd_create|pidfd_open|pidfd_send_signal'
names="$names"'|eventfd|epoll_[a-z_]+|strerrordesc_np|strerrorname_np|pthread_[a-z_]+_np'
names="$names"'|backtrace|backtrace_symbols|process_vm_readv|process_vm_writev|MAP_STACK'
names="$names"'|MAP_FIXED_NOREPLACE|F_ADD_SEALS|FUTEX_[A-Z_]+|gettid'

# Paths for the platform layer alone (anywhere, strings included).
paths='/proc/|/dev/shm|/sys/'

# Files that still call Linux directly, on their way to the platform layer:
# their findings are printed but do not fail the check.  Remove a file from
# this list once it is clean.
pending=""

status=0
npending=0
for f in $(find "$src" -path "$src/platform" -prune -o \( -name '*.c' -o -name '*.h' \) -print |
           sort); do
    rel=${f#"$src"/}
    # The text without comments, each line prefixed with its number in the
    # file (the preprocessor's line markers say where it skipped lines);
    # directives kept, macros not expanded.
    if ! "$gcc" -fpreprocessed -dD -E -x c "$f" >"$tmp" 2>/dev/null; then
        echo "check_platform: error: cannot read src/$rel" >&2
        status=1
        continue
    fi
    code=$(awk '/^# [0-9]+ "/ { n = $2; next } { print n ":" $0; n++ }' "$tmp")
    nostr=$(printf '%s\n' "$code" | sed -E 's/"([^"\\]|\\.)*"/""/g')
    hits=$( {
        printf '%s\n' "$code" |
            grep -E "^[0-9]+:[[:space:]]*#[[:space:]]*include[[:space:]]*<($headers)>" || true
        printf '%s\n' "$nostr" | grep -vE '^[0-9]+:[[:space:]]*#[[:space:]]*include' |
            grep -wE "$names" || true
        printf '%s\n' "$code" | grep -E "$paths" || true
    } | cut -d: -f1 | sort -nu)
    [ -z "$hits" ] && continue
    kind=error
    case " $pending " in *" $rel "*) kind=pending ;; esac
    for n in $hits; do
        echo "check_platform: $kind: src/$rel:$n: $(sed -n "${n}p" "$f" | sed 's/^[[:space:]]*//')" >&2
        [ "$kind" = pending ] && npending=$((npending + 1))
    done
    [ "$kind" = error ] && status=1
done
if [ "$status" = 0 ]; then
    echo "check_platform: nothing above src/platform/ uses the system directly" \
         "($npending findings in files pending: $pending)"
fi
exit $status
