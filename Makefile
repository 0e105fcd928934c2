# The README's two commands: `make demo` and `make test`. Everything else lives in CMake.
BUILD  ?= build
PRESET ?= dev
JOBS   ?= 2

.PHONY: all deps configure build test test-asan test-debian13 clean-debian13 demo bench fuzz \
        docs install clean device-bundle device-check

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
	@cmake --preset $(PRESET) -B $(BUILD) > $(BUILD)/configure.log 2>&1 || (cat $(BUILD)/configure.log; exit 1)
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

# The Debian 13 leg (LibTorch 2.6, OpenCV 4.10, Catch2 3, GCC 14; parity against torchvision
# 0.21): a Debian 13 root made once by debootstrap at /var/cache/ostrov/debian13 (needs root;
# OSTROV_DEBIAN13_ROOT moves it), this checkout built in build-debian13, the whole suite.
test-debian13:
	JOBS=$(JOBS) bash scripts/debian13.sh test

clean-debian13:
	bash scripts/debian13.sh clean
	rm -rf build-debian13

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

# The API reference of the public headers (Doxygen, installed by install-deps.sh --docs) in
# $(BUILD)/docs/html, README.md as its main page. Any warning (an undocumented public symbol,
# a broken reference) fails the target; CI runs it.
docs:
	@bash scripts/install-deps.sh --docs
	@rm -rf $(BUILD)/docs && mkdir -p $(BUILD)/docs
	OSTROV_DOCS_OUT=$(BUILD)/docs doxygen docs/Doxyfile
	@if [ -s $(BUILD)/docs/warnings.log ]; then cat $(BUILD)/docs/warnings.log; \
	  echo "docs: $$(wc -l < $(BUILD)/docs/warnings.log) Doxygen warnings ($(BUILD)/docs/warnings.log)"; \
	  exit 1; fi
	@echo "docs: $(BUILD)/docs/html/index.html, no warnings"

# What a GPU machine needs that it lacks (docs/building.md, "A GPU machine"): the C++
# dependencies built from Debian's sources into deps/device, packed as deps/device.tar.xz, and
# Debian's Fashion-MNIST files in deps/fashion-mnist; both travel with a device call, which runs
# scripts/device/run.sh. device-check builds ostrov against that prefix here (Debian's LibTorch)
# in build-device and runs the whole suite there, as the GPU machine would.
device-bundle:
	bash scripts/device/bundle.sh
	tar -cJf deps/device.tar.xz -C deps device
	mkdir -p deps/fashion-mnist && cp -u /usr/share/datasets/fashion-mnist/*.gz deps/fashion-mnist/
	@du -sh deps/device.tar.xz deps/fashion-mnist

device-check: device-bundle
	JOBS=$(JOBS) bash scripts/device/build.sh build-device
	ctest --test-dir build-device -j $(JOBS) --output-on-failure

install: build
	cmake --install $(BUILD) --prefix $(or $(PREFIX),/usr/local)

clean:
	rm -rf $(BUILD)
