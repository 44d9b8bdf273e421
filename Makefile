# Developer entry points. CI runs .ci/run, which runs `make lint` and `make test`.
CARGO ?= cargo
CRD_DIR := config/crd/bases

.PHONY: build test demo e2e lint fmt crds testenv-up testenv-down fuzz dist

## build: compile every crate, tests and benches included
build:
	$(CARGO) build --workspace --all-targets

## test: start the test environment (installing what it needs), run every test, stop it, check nothing leaked
test:
	hack/test.sh

## demo: the Flux guide end to end on this machine (registry, Git server, API server, both controllers);
## KEEP=1 leaves everything running
demo:
	hack/demo.sh

## e2e: like test, but only the end-to-end package in tests/
e2e:
	hack/test.sh -p e2e

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## crds: regenerate config/crd/bases from the API types, and the Helm chart's copy of them
CHART_CRD_DIR := charts/flux-image-automation/crds
crds:
	$(CARGO) run -q -p api --bin crdgen -- $(CRD_DIR)
	rm -f $(CHART_CRD_DIR)/*.yaml
	cp $(CRD_DIR)/*.yaml $(CHART_CRD_DIR)/

## fuzz: run each fuzz target for FUZZ_SECONDS (nightly toolchain; not part of `make test`)
FUZZ_SECONDS ?= 600
fuzz:
	cargo +nightly fuzz --version >/dev/null 2>&1 || cargo +nightly install cargo-fuzz --locked
	mkdir -p fuzz/corpus/parse
	cargo +nightly fuzz run parse fuzz/corpus/parse fuzz/seeds/parse -- -max_total_time=$(FUZZ_SECONDS)
	cargo +nightly fuzz run --fuzz-dir fuzz-templates parse_execute -- \
	  -dict=fuzz-templates/templates.dict -max_total_time=$(FUZZ_SECONDS)

testenv-up:
	hack/testenv.sh up

testenv-down:
	hack/testenv.sh down

## dist: release binaries of both controllers, as the Dockerfile builds them
dist:
	$(CARGO) build --release --locked -p image-reflector-controller -p image-automation-controller
