# Thin wrapper over CMake so that `make` and `make test` are the whole interface.
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
BENCH_BUILD ?= build-release
BENCH_ARGS ?=
FUZZ_SECONDS ?= 15
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all test asan test-asan clean format format-check bench fuzz fuzz-run

all:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

test: all
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) --timeout 600

asan:
	cmake -S . -B $(ASAN_BUILD) -DSBX_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(ASAN_BUILD) -j$(JOBS)

test-asan: asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -j$(JOBS) --timeout 600

# libFuzzer harnesses (tests/fuzz): a separate clang build with ASan+UBSan and coverage on every library;
# only the fuzz targets are built. fuzz-run runs each harness for FUZZ_SECONDS from its seed corpus.
# (clang 14 does not know gcc's -Wno-format-truncation, hence -Wno-unknown-warning-option.)
fuzz:
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DSBX_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DSBX_FUZZ_SECONDS=$(FUZZ_SECONDS) \
		-DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link -Wno-unknown-warning-option" >/dev/null
	cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzz

fuzz-run: fuzz
	cd $(FUZZ_BUILD) && ctest --output-on-failure -L fuzz -j$(JOBS) --timeout $$(( $(FUZZ_SECONDS) * 4 + 60 ))

# Benchmarks (bench/run.sh; not part of test): a release build of its own (-O2, no sanitizers, no -g), then
# the whole suite. BENCH_QUICK=1 for a < 3 min run; BENCH_ARGS=--write-results rewrites bench/RESULTS.md.
bench:
	cmake -S . -B $(BENCH_BUILD) -DCMAKE_BUILD_TYPE=Release -DSBX_SANITIZE=OFF $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BENCH_BUILD) -j$(JOBS) --target sbxd sbx-shim sbx-init sbx-unpack sbx-bench
	BUILD=$(BENCH_BUILD) bench/run.sh $(BENCH_ARGS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(BENCH_BUILD)
