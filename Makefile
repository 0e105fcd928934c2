# The README's two commands: `make demo` and `make test`. Everything else lives in CMake.
BUILD  ?= build
PRESET ?= dev
JOBS   ?= 2

.PHONY: all deps configure build test test-asan demo bench fuzz install clean

all: build

# scripts/install-deps.sh: build + run packages; the targets that test, benchmark or fuzz add
# --dev (Catch2, Google Benchmark, clang, the Python parity stack).
DEPS_ARGS ?=
test test-asan bench fuzz: DEPS_ARGS += --dev

deps:
	@bash scripts/install-deps.sh $(DEPS_ARGS)

# Configured every time (a few seconds): packages installed since are then found.
configure: deps
	@mkdir -p $(BUILD)
	@cmake --preset $(PRESET) > $(BUILD)/configure.log 2>&1 || (cat $(BUILD)/configure.log; exit 1)
	@grep "^-- ostrov:" $(BUILD)/configure.log || true

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	ctest --test-dir $(BUILD) -j $(JOBS) --output-on-failure --no-tests=error

# The whole suite built with AddressSanitizer + UndefinedBehaviorSanitizer (preset asan, in
# build-asan); ASAN_OPTIONS for the uninstrumented LibTorch come from the test preset.
test-asan: deps
	cmake --preset asan
	cmake --build build-asan -j $(JOBS)
	ctest --preset asan

demo: build
	bash scripts/demo.sh $(BUILD)

# ostrov vs PyTorch-Python side by side; the table also goes to benchmarks/results/latest.json.
bench: build
	/usr/bin/python3 benchmarks/run.py --build $(BUILD) $(BENCH_ARGS)

# libFuzzer targets (clang, ASan + UBSan) in build-fuzz, each run FUZZ_SECONDS (default 60).
FUZZ_SECONDS ?= 60
fuzz: deps
	cmake --preset fuzz
	cmake --build build-fuzz -j $(JOBS) --target fuzz_all
	bash scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

install: build
	cmake --install $(BUILD) --prefix $(or $(PREFIX),/usr/local)

clean:
	rm -rf $(BUILD)
