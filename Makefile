# Developer entry points. `make test` is what CI runs (.ci/run).
CARGO ?= cargo

.PHONY: build test lint fmt

build:
	$(CARGO) build --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test:
	$(CARGO) test --workspace
