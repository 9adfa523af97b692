# The developer and test contract (docs: DESIGN.md section 3). Everything runs through the
# `stack` binary (crates/stack); knobs come from the environment: CHECKOUT_PROTOCOL=saga|2pc,
# REPLICAS=N, GATEWAY_PORT=8000.

CARGO ?= cargo
STACK := ./target/release/stack
# One build for everything: the same packages and targets as `cargo test --release
# --workspace`, so features resolve once and no dependency is compiled twice (a second
# variant of every dependency costs minutes on a 2-core machine). The tests' own builds of
# the binaries (crates/stack/src/binaries.rs) and the benchmark's use the same arguments.
BUILD := $(CARGO) build --release --workspace --all-targets

.DEFAULT_GOAL := help
.PHONY: help install build up down clean status test test-crashes test-e2e test-crates bench soak outage deploy-check fmt lint

help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  knobs: CHECKOUT_PROTOCOL=saga|2pc REPLICAS=N GATEWAY_PORT=8000"
	@echo "  MONITORING=1 make up: also a local Prometheus on 127.0.0.1:9090 (component prometheus)"

# Only needs to exist: down/status/clean work with any build of it.
$(STACK):
	$(BUILD)

install: ## Install missing prerequisites (redis-server, nginx-light, JVM, Maven; Kafka jars)
	$(BUILD)
	$(STACK) install

build: ## Build every crate (release)
	$(BUILD)

up: install ## Build, start the whole stack in the background; returns once all is healthy
	$(BUILD)
	$(STACK) up

down: $(STACK) ## Stop everything; data is kept
	$(STACK) down

clean: $(STACK) ## Stop everything and delete .stack (data and logs)
	$(STACK) clean

status: $(STACK) ## One line per component: name, pid, port, health
	@$(STACK) status || true

test: install build ## The whole test suite; the tests start their own stacks
	$(MAKE) --no-print-directory --output-sync=target -j3 test-crashes test-e2e test-crates

# The suites spend much of their time waiting (leases, deadlines, restarts), so `make test`
# runs them in three lanes at once, each lane's output printed whole when it ends: the crash
# suites, the other end-to-end suites, and every other crate's tests. Suites are found by
# file name (tests/NAME.rs or tests/NAME/main.rs), so a new one is never left out. Every lane
# selects the whole workspace and picks targets within it: features resolve as in `make
# build`, so nothing is compiled again (a lane of `-p e2e` alone rebuilt a dozen crates).
# Cargo is kept off make's jobserver: everything is built by then.
LANE_CARGO := MAKEFLAGS= $(CARGO) test --release --workspace
suites = $(basename $(notdir $(wildcard crates/$(1)/tests/*.rs))) \
	$(patsubst crates/$(1)/tests/%/main.rs,%,$(wildcard crates/$(1)/tests/*/main.rs))
CRASH_SUITES := chaos faults
E2E_SUITES := $(filter-out $(CRASH_SUITES),$(call suites,e2e))
OTHER_SUITES := $(sort $(foreach c,$(filter-out e2e,$(notdir $(wildcard crates/*))),$(call suites,$(c))))

test-crashes:
	$(LANE_CARGO) $(addprefix --test ,$(CRASH_SUITES))

test-e2e:
	$(LANE_CARGO) $(addprefix --test ,$(E2E_SUITES))

test-crates:
	$(LANE_CARGO) --lib --bins $(addprefix --test ,$(OTHER_SUITES))
	$(LANE_CARGO) --doc

bench: ## The benchmark (load generator against the stack)
	$(BUILD)
	./target/release/loadgen bench

SOAK_MINUTES ?= 30

soak: ## Sustained load for SOAK_MINUTES (30): memory, disk and RSS over time; fails on growth
	$(BUILD)
	./target/release/loadgen soak --minutes $(SOAK_MINUTES)

outage: ## Open-loop checkouts while the Kafka broker is frozen (SIGSTOP) from 10 s to 40 s
	$(BUILD)
	./target/release/loadgen outage

deploy-check: ## Check the container, Kubernetes and monitoring deployment files
	bash deploy/check.sh

fmt: ## Format all code
	$(CARGO) fmt --all

lint: ## Formatting check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
