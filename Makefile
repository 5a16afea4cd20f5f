# The two commands a newcomer types: `make run` and `make test`.
# Both install the Debian packages they need first (scripts/install-deps.sh).

CARGO ?= cargo

.PHONY: run test deps build lint bench clean-demo

deps:
	bash scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --bins

# Starts a synthetic test camera and the recorder on built-in defaults under ./demo.
run: build
	bash scripts/demo.sh

# The whole test suite (unit, property and end-to-end tests with real processes).
test: deps
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Benchmarks print tables; see README.md. CAMERAS=N SECS=S override the defaults.
bench: deps
	$(CARGO) build --release --workspace --bins
	bash scripts/bench-record.sh

clean-demo:
	rm -rf demo
