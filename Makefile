# secret-gate: every CI step is a target here. `make help` lists them.
CARGO  ?= cargo
FLAGS  := --locked
TARGET := x86_64-unknown-linux-gnu
STATIC := target/$(TARGET)/release/secret-gate
IMAGE  ?= localhost/secret-gate:dev
INJECTOR_IMAGE ?= localhost/secret-gate-injector:dev

.DEFAULT_GOAL := help
.PHONY: help build release static test lint fmt-check clippy demo e2e image image-release bench docs injector-static injector-image

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

build: ## Build secret-gate and fake-safe (debug)
	$(CARGO) build $(FLAGS) --workspace --bins

release: ## Build the small release binary
	$(CARGO) build $(FLAGS) --release -p secret-gate --bin secret-gate

static: ## Build the static release binary used by the image
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build $(FLAGS) --release --target $(TARGET) -p secret-gate --bin secret-gate

test: ## Run every unit and integration test (real binary, real files, real TLS)
	$(CARGO) test $(FLAGS)

fmt-check: ## Check formatting
	$(CARGO) fmt --all -- --check

clippy: ## Lint with clippy, warnings are errors
	$(CARGO) clippy $(FLAGS) --workspace --all-targets -- -D warnings

lint: fmt-check clippy ## fmt-check + clippy

# podman settings this sandbox needs (ulimits, runc); set CONTAINERS_CONF to use your own.
image injector-image e2e: export CONTAINERS_CONF ?= $(CURDIR)/tests/e2e/containers.conf

image: static ## Build the scratch image from the static binary (no registry needed)
	podman build -f Containerfile.local -t $(IMAGE) .
	podman run --rm $(IMAGE) --version
	@podman image inspect --format '{{.Size}} bytes' $(IMAGE)

injector-static: ## Build the static release binary of secret-gate-injector
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build $(FLAGS) --release --target $(TARGET) -p secret-gate-injector --bin secret-gate-injector

injector-image: injector-static ## Build the injector's scratch image (Containerfile.injector; a KRM function image too)
	podman build -f Containerfile.injector -t $(INJECTOR_IMAGE) .
	podman run --rm $(INJECTOR_IMAGE) --version
	@podman image inspect --format '{{.Size}} bytes' $(INJECTOR_IMAGE)

image-release: ## Build the image with the Rust builder stage in Containerfile (needs registry access)
	podman build -f Containerfile -t $(IMAGE) .

e2e: image ## Run the image in real pods with podman kube play (needs podman, runc, busybox-static)
	$(CARGO) test $(FLAGS) --test e2e_pod -- --ignored --test-threads=1

bench: ## Measure latency, footprint, size, load and TLS checks against baselines; writes docs/benchmarks.md
	@command -v inotifywait >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq inotify-tools >/dev/null) \
		|| echo "bench: could not install inotify-tools; figure 1 will report inotifywait's runs as failed"
	$(MAKE) image || echo "bench: no image (podman unavailable?); the size tables will say so"
	command -v openssl >/dev/null 2>&1 || apt-get install -y openssl >/dev/null 2>&1 \
		|| echo "bench: no openssl; figure 7 will have no openssl baseline"
	$(CARGO) bench $(FLAGS) --bench gate

demo: build ## Show the gate waiting for a volume (torn write), for the fake Safe, and keeping running through a rotation
	bash tests/scripts/demo.sh

docs: ## Regenerate the --help blocks in README/docs and the man page docs/secret-gate.1
	UPDATE_DOCS=1 $(CARGO) test $(FLAGS) --test docs
	UPDATE_DOCS=1 $(CARGO) test $(FLAGS) -p secret-gate-injector --test docs --test webhook_docs
