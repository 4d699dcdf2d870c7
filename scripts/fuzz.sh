#!/bin/sh
# fuzz.sh [BUILD_DIR] [SECONDS] - runs the manager's fuzz target
# (tests/fuzz/fuzz_manager.c, libFuzzer) for longer than `make test` does:
# SECONDS, default 1800.  New inputs collect in BUILD_DIR/tests/fuzz/corpus,
# findings (crash-*, leak-*, timeout-*) in BUILD_DIR/tests/fuzz/.  Needs
# clang with libFuzzer (Debian: clang).
set -eu
build=${1:-build}
secs=${2:-1800}
cd "$(dirname "$0")/.."
cmake -S . -B "$build" -DMPROC_FUZZ=ON -DMPROC_FUZZ_LONG_SECONDS="$secs"
cmake --build "$build" --target fuzz
