# vmm: build, test, images, benchmarks. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin
export CGO_ENABLED := 0

# Debian packages the tests and images need (installed by `make setup`).
DEB_PACKAGES := qemu-system-x86 qemu-utils acpica-tools xz-utils gcc linux-libc-dev dmidecode e2fsprogs seabios chromium mtools ovmf ipxe

.PHONY: all build setup test unit lint fuzz e2e images outer-qemu run bench clean help

all: build

build: ## build bin/vmm (static) and bin/kvmexec (go test -exec: host KVM tests where KVM is)
	$(GO) build -o $(BIN)/vmm ./cmd/vmm
	$(GO) build -o $(BIN)/kvmexec ./images/cmd/kvmexec

setup: ## install the Debian packages and Go tools the tests need (idempotent)
	@scripts/setup.sh $(DEB_PACKAGES)

test: setup lint unit ## everything: lint, unit + host-KVM tests, fuzz seeds; e2e in the nested test host when CI=true
ifeq ($(CI),true)
	$(MAKE) fuzz e2e
endif

# Host KVM tests (TestKVM...) run through bin/kvmexec: here where /dev/kvm is
# hardware virtualization, in the nested test host elsewhere (VMM_TEST_KVM=
# local|nested forces either). Under CI the loader tests get Debian's real
# kernels (bzImage and the vmlinux inside it), and the e2e package runs once,
# in `make e2e`. -timeout 30m: one package's host KVM tests run in one outer
# boot, and cmd/vmm's took over go test's default 10m on a loaded 2-core machine.
KVMEXEC_SUMMARY := $(CURDIR)/build/kvmexec-summary.txt
# The outer QEMU (Debian's, rebuilt with our fix for nested CR8 writes) is
# built once per machine into ~/.cache/vmm, here rather than inside a test's
# deadline; only where the nested host will run (always under CI: make e2e).
unit: build
	@echo "== $@: started $$(date +%T)"
	@mkdir -p build && rm -f $(KVMEXEC_SUMMARY)
	$(GO) run ./images/cmd/outerqemu $(if $(filter true,$(CI)),,-if-nested)
ifeq ($(CI),true)
	$(GO) run ./images/cmd/mkimages -out build/images -outer=false -debian -timeout 60m >/dev/null
	env $$(scripts/test-kernels.sh) VMM_KVMEXEC_SUMMARY=$(KVMEXEC_SUMMARY) \
		$(GO) test -count=1 -timeout 30m -exec $(CURDIR)/$(BIN)/kvmexec $$($(GO) list ./... | grep -v '/e2e$$')
else
	VMM_KVMEXEC_SUMMARY=$(KVMEXEC_SUMMARY) $(GO) test -count=1 -timeout 30m -exec $(CURDIR)/$(BIN)/kvmexec ./...
endif
	@scripts/kvmexec-summary.sh $(KVMEXEC_SUMMARY)

# go mod tidy -diff changes nothing: it prints the diff and fails when go.mod
# or go.sum is not tidy, and fails with no diff on other errors (a download).
lint:
	@echo "== $@: started $$(date +%T)"
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || { echo "gofmt: files above need formatting"; exit 1; }
	@diff=$$($(GO) mod tidy -diff) && exit 0; rc=$$?; \
	if [ -n "$$diff" ]; then printf '%s\n' "$$diff" >&2; echo "go.mod/go.sum are not tidy (diff above): run go mod tidy and commit the result"; \
	else echo "go mod tidy -diff failed (exit $$rc, error above)"; fi; exit 1
	$(GO) vet ./...
	$$($(GO) env GOPATH)/bin/staticcheck ./...

outer-qemu: ## build (once per machine) the nested test host's QEMU: Debian's source with our CR8 fix, in ~/.cache/vmm
	$(GO) run ./images/cmd/outerqemu

fuzz: ## run every fuzz target for a bounded time (FUZZTIME, default 4s each)
	@echo "== $@: started $$(date +%T)"
	@scripts/fuzz.sh $${FUZZTIME:-4s}

images: ## build the guest and nested-test-host images under build/
	$(GO) run ./images/cmd/mkimages -out build/images

e2e: build ## boot real Debian guests under vmm inside the nested test host
	@echo "== $@: started $$(date +%T)"
	$(GO) run ./images/cmd/outerqemu
	VMM_E2E=1 $(GO) test -count=1 -v -timeout 50m ./e2e/

run: build setup ## boot the default Debian guest (directly on hardware KVM, else in the nested test host)
	@scripts/run-default.sh

bench: build setup ## vmm start-up and memory vs QEMU and gokvm (hardware KVM here, else one nested-host boot); boot times, disk I/O (virtio-blk, NVMe, AHCI), virtio-net I/O, memory beyond guest RAM (and after the guest frees memory, with and without the balloon), exit round trips and Hyper-V synthetic timers (a tiny multiboot guest), the Debian image to cloud-init's final message inside one nested-host boot
	$(GO) run ./images/cmd/startbench -prepare
	$(GO) run -exec $(CURDIR)/$(BIN)/kvmexec ./images/cmd/startbench -vmm $(CURDIR)/$(BIN)/vmm
	$(GO) run ./images/cmd/bench -io -hyperv -firmware -uefi -footprint -exits -cloudinit

clean:
	rm -rf $(BIN) build

help:
	@grep -E '^[a-z0-9-]+:.*## ' Makefile | sed -E 's/:.*## /\t/'
