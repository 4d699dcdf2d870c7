# mproc - this Makefile only drives CMake; the build is defined in
# CMakeLists.txt.
#
#   make demo     build and run the tour of examples
#   make test     build and run every test, plain and under ASan+UBSan
#   make docs     write the HTML reference to $(BUILD)/docs/html (doxygen)
#   make bench    run the benchmarks beside ../shared/anchors, with ratios
#   make chaos    the fault-injection suite, long: CHAOS_ROUNDS (default 200)
#                 rounds from CHAOS_SEED (default: the clock; printed)
#   make install  install into PREFIX (default /usr/local)
#   make uninstall  remove what the last install from $(BUILD) put in place
#
# On a fresh Debian machine scripts/deps.sh installs what is missing first.

BUILD      ?= build
ASAN_BUILD ?= build-asan
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=
# The project's own builds stop on a warning; a packager's plain CMake
# build does not (MPROC_WERROR is off by default).  WERROR=OFF to iterate.
WERROR     ?= ON

.PHONY: all build build-asan demo docs test test-plain test-asan bench install uninstall format lint \
        fuzz clean deps chaos

all: build

# The optional parts (MPI engine, manager, fuzzing, line numbers) are
# installed when possible; without them the build leaves them out.
deps:
	@scripts/deps.sh build
	@scripts/deps.sh parts || echo "deps: optional parts missing; the build leaves them out" >&2

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPROC_WERROR=$(WERROR) $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DMPROC_SANITIZE=ON \
	      -DMPROC_BUILD_BENCH=OFF -DMPROC_WERROR=$(WERROR) $(CMAKE_ARGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)

demo: build
	scripts/demo.sh $(BUILD)

test: test-plain test-asan

test-plain: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: build-asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)

bench:
	@scripts/deps.sh bench
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPROC_WERROR=$(WERROR) $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)
	scripts/bench.sh $(BUILD)

# The reference from the header comments; needs only a configured tree.
docs:
	@scripts/deps.sh lint
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPROC_WERROR=$(WERROR) $(CMAKE_ARGS)
	cmake --build $(BUILD) --target docs

# The fault-injection suite (tests/chaos/, docs/chaos.md); `make test`
# runs a short pass of it.  The last lines it prints are the totals.
CHAOS_ROUNDS ?= 200
CHAOS_SEED   ?=
chaos: build
	CHAOS_ROUNDS=$(CHAOS_ROUNDS) CHAOS_SEED=$(CHAOS_SEED) $(BUILD)/tests/chaos/chaos

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

# Reads $(BUILD)/install_manifest.txt, the list of files the last install
# from this build tree wrote (see cmake/uninstall.cmake).
uninstall:
	cmake -DMANIFEST=$(BUILD)/install_manifest.txt -P cmake/uninstall.cmake

format:
	clang-format -i include/mproc.h include/mproc/*.h $$(find src tools -name '*.[ch]' 2>/dev/null) \
	  tests/*.c tests/*.h tests/chaos/*.c tests/chaos/*.h examples/*.c examples/apps/*.c bench/*.c bench/*.h

lint: build
	@scripts/deps.sh lint
	python3 scripts/check_module_graph.py
	scripts/check_platform.sh
	python3 scripts/check_function_size.py
	scripts/check_docs.sh
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --inline-suppr --suppress=missingIncludeSystem -I include -I src src
	@# clang-tidy over JOBS files at once; any warning fails the lint.
	find src -name '*.c' | sort | \
	  xargs -P $(JOBS) -n 4 clang-tidy -p $(BUILD) --quiet --warnings-as-errors='*'

# The manager's wire decoder under libFuzzer, for MPROC_FUZZ_LONG_SECONDS
# (30 minutes by default; `make test` runs it for 30 s).
fuzz: build
	cmake --build $(BUILD) --target fuzz

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
