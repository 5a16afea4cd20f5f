# The two commands a newcomer types: `make run` and `make test`.
# Both install the Debian packages they need first (scripts/install-deps.sh).

CARGO ?= cargo
# The test fakes and the benchmarks' `bench-fill` command are built only for tests and
# benchmarks (feature `testing`), never into the binaries `make run` starts.
TEST_FEATURES = --features viewer-api/testing,recorder/testing
# `viewer-api/testing` names the feature of viewer-api as a dependency (of the tests
# crate): it is on only when the build selects a package that depends on viewer-api.
BENCH_FEATURES = --features viewer-api/testing

.PHONY: run test deps build fmt lint bench bench-api bench-export bench-ui bench-mixed clean-demo

deps:
	bash scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --bins

# Starts a synthetic test camera and the recorder on built-in defaults under ./demo.
run: build
	bash scripts/demo.sh

# The whole test suite (unit, property and end-to-end tests with real processes).
test: deps
	$(CARGO) build --workspace --bins $(TEST_FEATURES)
	$(CARGO) test --workspace --no-fail-fast

# rustfmt by file too: `cargo fmt` cannot see modules declared through a macro
# (the recorder's internal ones, in recorder/src/lib.rs), and skipped them unformatted.
RS_FILES = $(shell git ls-files '*.rs')

fmt:
	$(CARGO) fmt --all
	@echo "rustfmt --edition 2024 <every tracked .rs file>"
	@rustfmt --edition 2024 $(RS_FILES)

lint:
	$(CARGO) fmt --all --check
	@echo "rustfmt --edition 2024 --check <every tracked .rs file>"
	@rustfmt --edition 2024 --check $(RS_FILES)
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	# and the shipped build alone, without the tests' `testing` feature
	$(CARGO) clippy --workspace --lib --bins -- -D warnings

# Benchmarks print tables; see README.md. CAMERAS=N SECS=S override the defaults.
bench: deps
	$(CARGO) build --release -p recorder -p ringfence-tests --bin recorder --bin test-camera
	bash scripts/bench-record.sh

# Playback benchmark of the viewer-api (HOURS=4 N=20 by default); see README.md.
bench-api: deps
	$(CARGO) build --release -p viewer-api --features testing
	$(CARGO) build --release -p recorder
	bash scripts/bench-api.sh

# Export benchmark: 1 h of one 4 Mbit/s camera beside ffmpeg -c copy; see README.md.
bench-export: deps
	$(CARGO) build --release -p viewer-api --features testing
	$(CARGO) build --release -p recorder
	bash scripts/bench-export.sh

# Recording while officers play clips and watch live views (CAMERAS=32 PLAYERS=20 LIVE=4).
bench-mixed: deps
	$(CARGO) build --release -p recorder -p viewer-api -p ringfence-tests --bin recorder --bin viewer-api --bin test-camera $(BENCH_FEATURES)
	bash scripts/bench-mixed.sh

# Review console in headless Chromium: page load, JS+CSS gzipped, View → first frame
# (H.264, H.265 preview), preview CPU; LOADS=10 VIEWS=5 by default.
bench-ui: deps
	bash scripts/bench-ui.sh

clean-demo:
	rm -rf demo

# The appliance (issue 11): the arm64 Debian 12 disk image (mmdebstrap, no Docker) in
# target/image/, and its test: built with a test seed, booted in qemu-system-aarch64
# (TCG), checked over SSH, HTTPS and the serial console. Both need root. See image/README.md.
.PHONY: image image-test image-deps
image-deps:
	bash image/install-deps.sh

image: image-deps
	bash image/build.sh

image-test: image-deps
	bash image/test.sh
