# Developer entry points. `make test` is what CI runs (.ci/run).
CARGO ?= cargo

.PHONY: build test lint fmt

build:
	$(CARGO) build --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The loopback test environment (hack/TESTING.md) is started for the run and stopped after it, whatever the
# tests' outcome; `check` then proves no process it started is left.
test:
	hack/testenv.sh up
	status=0; $(CARGO) test --workspace || status=$$?; \
	hack/testenv.sh down; hack/testenv.sh check && exit $$status
