# Lifeboat. `make run` and `make test` install whatever is missing first.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
STAMP := $(VENV)/.installed

.PHONY: run test test-unit test-integration test-vm deps venv bench iso usb-image boot clean

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

test: deps venv
	$(PYTEST) tests/unit
	$(PYTEST) -m integration tests/integration
	$(MAKE) test-vm

test-unit: venv
	$(PYTEST) tests/unit

test-integration: deps venv
	$(PYTEST) -m integration tests/integration

test-vm: deps venv
	$(PYTEST) -m vm tests/vm

bench: deps venv
	$(PY) bench/bench.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info

# ---- live ISO (owned by live-build/) ----
iso: deps venv
	live-build/build-iso

usb-image: iso
	live-build/build-usb-image

boot: iso
	live-build/boot-demo
