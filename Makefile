# Lifeboat. `make run` and `make test` install whatever is missing first.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
STAMP := $(VENV)/.installed

.PHONY: run test test-unit test-integration test-vm deps venv bench bench-volumes iso usb-image boot clean

deps:
	scripts/ensure-deps

# A virtualenv on Debian's python3 that sees python3-parted and python3-pyudev.
$(STAMP): pyproject.toml
	test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	scripts/retry $(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

venv: $(STAMP)

run: deps venv
	$(VENV)/bin/lifeboat sandbox

# Every layer runs, even after one failed; the table at the end gives each layer's tests and seconds, and
# make fails when any layer failed or ran no test. The ISO build (mostly I/O and xz/zstd: minutes when an
# input changed, seconds when cached) runs in the background from the start, holding the lock the vm
# layer's live_iso fixture takes; when it is still running after unit and integration, the vm layer
# starts anyway with the tests that need no ISO (LIFEBOAT_ISO_PENDING=1). The vm layer boots two QEMU
# guests side by side (VM_JOBS=1: one process, pytest's order).
RESULTS := build/test-results
LAYER   := /usr/bin/python3 scripts/test-layers
CACHE   := $(or $(LIFEBOAT_CACHE),/var/cache/lifeboat)
VM_JOBS ?= 2
VM_ARGS := $(if $(filter-out 0 1,$(VM_JOBS)),-n $(VM_JOBS) --dist load --maxschedchunk 1,-p no:xdist)

test: deps venv
	@rm -rf $(RESULTS); mkdir -p $(RESULTS) $(CACHE); date +%s >$(RESULTS)/started
	@echo "== iso: live-build/build-iso in the background, log in $(RESULTS)/iso.log"
	@flock $(CACHE)/.build-iso.lock $(LAYER) run $(RESULTS) iso -- live-build/build-iso \
		>$(RESULTS)/iso.log 2>&1 & iso=$$!; \
	echo "== unit"; \
	$(LAYER) run $(RESULTS) unit -- $(PYTEST) tests/unit --junitxml=$(RESULTS)/unit.xml; \
	echo "== integration"; \
	$(LAYER) run $(RESULTS) integration -- $(PYTEST) -m integration tests/integration \
		--junitxml=$(RESULTS)/integration.xml; \
	export LIFEBOAT_ISO_STATUS=$(CURDIR)/$(RESULTS)/iso.json; \
	if kill -0 $$iso 2>/dev/null; then export LIFEBOAT_ISO_PENDING=1; \
		echo "== vm ($(VM_JOBS) at a time; the ISO build goes on: tests that need no ISO first)"; \
	else wait $$iso; tail -n 20 $(RESULTS)/iso.log; echo "== vm ($(VM_JOBS) at a time)"; fi; \
	$(LAYER) run $(RESULTS) vm -- $(PYTEST) -m vm $(VM_ARGS) --durations=0 tests/vm \
		--junitxml=$(RESULTS)/vm.xml; \
	if [ -n "$${LIFEBOAT_ISO_PENDING:-}" ]; then wait $$iso; echo "== iso"; tail -n 20 $(RESULTS)/iso.log; fi; \
	$(LAYER) summary $(RESULTS) unit integration iso vm

test-unit: venv
	$(PYTEST) tests/unit

test-integration: deps venv
	$(PYTEST) -m integration tests/integration

test-vm: deps venv
	$(PYTEST) -m vm $(VM_ARGS) tests/vm

bench: deps venv
	$(PY) bench/bench.py $(BENCH_ARGS)

# Issue 11's figure: an LV on a 20 GiB PV against the same filesystem on a plain partition, captured inside
# the live ISO in QEMU (this host has no device-mapper). Manual, not part of `make test`.
bench-volumes: iso
	$(PY) bench/volbench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info

# ---- live ISO (owned by live-build/) ----
iso: deps venv
	live-build/build-iso

usb-image: iso
	live-build/build-usb-image

boot: iso
	live-build/boot-demo
