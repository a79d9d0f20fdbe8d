# keyledger — the commands a new engineer needs. See README.md.
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: run test test-deps test-under-load lint bench fmt fuzz

## Run the service on its embedded defaults (data under ./data, HTTP on 127.0.0.1:8080).
run:
	$(CARGO) run --bin keyledger -- serve

## Install what the tests need (if missing), then run every test.
test: test-deps
	$(CARGO) nextest run --workspace --no-fail-fast

## `make test` RUNS times (default 5) while busy loops keep every core at 100 %.
test-under-load: test-deps
	scripts/test-under-load.sh $(RUNS)

## System and Python packages the tests use; each step does nothing when already done.
test-deps:
	@scripts/test-deps.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Benchmarks: ratios against a baseline measured in the same run. Writes target/bench-report.md.
## The workers section runs the release `keyledger` binary beside the bench's: both are built.
bench: test-deps
	$(CARGO) build --release --bin keyledger
	$(CARGO) run --release -p keyledger-bench -- $(BENCH_ARGS)

## Coverage-guided fuzzing of every decoder of outside bytes (docs/fuzzing.md): FUZZ_SECONDS
## per target (default 300), or only some: `make fuzz FUZZ_TARGETS="tokens config"`.
fuzz:
	scripts/fuzz.sh $(FUZZ_TARGETS)
