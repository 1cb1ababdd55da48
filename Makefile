# altiwatch — the two commands are `make demo` and `make test`; see README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup sysdeps check lint typecheck test bench bench-smoke demo clean

setup: $(STAMP) sysdeps

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,demo]'
	rm -f $(VENV)/.installed-*
	touch $@

# Debian's mosquitto (broker for tests and the demo) and prometheus (+promtool) when root and missing.
sysdeps:
	@missing=""; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v mosquitto_sub >/dev/null || missing="$$missing mosquitto-clients"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note: missing$$missing (run as root or install them; tests that need them will fail)"; fi; \
	fi

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

check: lint typecheck

# Two workers, one module each at a time (--dist loadfile): modules use distinct loopback
# ranges and free ports, and most of the suite's time is spent waiting on real time.
test: check
	PATH="/usr/sbin:$$PATH" $(PY) -m pytest -q -n 2 --dist loadfile

# Performance figures (about 20 min), then the long reliability runs (issue 8's minutes-long
# versions of the fault, load and kill tests); smoke-sized versions of both run in `make test`.
bench: setup
	PATH="/usr/sbin:$$PATH" $(PY) -m tests.benchmarks.run
	PATH="/usr/sbin:$$PATH" $(PY) -m tests.benchmarks.reliability_long all

demo: setup
	PATH="/usr/sbin:$$PATH" $(PY) -m agent.demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
