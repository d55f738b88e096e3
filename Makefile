# Thin wrapper over CMake so that `make` and `make test` are the whole interface.
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all test asan test-asan clean format format-check bench

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

bench: all
	bench/run.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
