# altiwatch — the two commands are `make demo` and `make test`; see README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

# Python dependencies are installed from uv.lock (resolved for Linux x86_64 and aarch64, with
# hashes) by uv. uv itself is bootstrapped into .tools/ by pip, pinned by version and by the
# sha256 of its two Linux wheels, so the only prerequisites are Python 3.11+ and make.
UV_VERSION := 0.13.9
UV_HASHES := \
  --hash=sha256:d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19 \
  --hash=sha256:5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe
TOOLS := .tools
UV := $(TOOLS)/bin/uv
SYNCED := $(VENV)/.synced
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON := $(shell command -v $(PYTHON))
export UV_PYTHON_DOWNLOADS := never
export UV_NO_PROGRESS := 1

.PHONY: setup sysdeps lock lock-upgrade dist check lint typecheck test bench bench-smoke demo docs docs-refs clean

setup: $(SYNCED) sysdeps

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	echo 'uv==$(UV_VERSION) $(UV_HASHES)' > $(TOOLS)/requirements.txt
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check --require-hashes \
	  -r $(TOOLS)/requirements.txt

# Exactly the lock: packages not in it are removed, a stale lock is an error (never re-resolved).
$(SYNCED): pyproject.toml uv.lock | $(UV)
	@$(UV) lock --check --quiet || { \
	  echo "error: uv.lock is stale against pyproject.toml. Run 'make lock', then" \
	       "'make test', and commit pyproject.toml and uv.lock together." >&2; exit 1; }
	$(UV) sync --locked --all-extras --quiet
	touch $@

# Refresh the lock on purpose: `make lock` after editing pyproject.toml keeps every other pin;
# `make lock-upgrade` takes the newest releases pyproject.toml allows (PACKAGE=name: just one).
lock: | $(UV)
	$(UV) lock

lock-upgrade: | $(UV)
	$(UV) lock $(if $(PACKAGE),--upgrade-package $(PACKAGE),--upgrade)

# For a site server: the wheel and sdist, and the runtime requirements exported from the lock
# with hashes (pip install --require-hashes -r dist/requirements.txt; then the wheel, --no-deps).
dist: setup
	rm -rf dist
	PATH="$(abspath $(TOOLS))/bin:$$PATH" $(PY) -m build --installer uv --outdir dist .
	$(UV) export --frozen --no-dev --no-emit-project --no-header \
	  --output-file dist/requirements.txt --quiet

# Debian's mosquitto (broker for tests and the demo), prometheus (+promtool), victoria-metrics
# (VictoriaMetrics, vmagent, vmalert, vmauth: the many-sites kits), prometheus-alertmanager
# (central kit) and chromium (the site page's browser test) when root and missing.
sysdeps:
	@missing=""; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v mosquitto_sub >/dev/null || missing="$$missing mosquitto-clients"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v vmagent >/dev/null || missing="$$missing victoria-metrics"; \
	command -v prometheus-alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
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

# A skipped test fails here (ALTIWATCH_STRICT_SKIPS, tests/support/strict_skips.py): make setup
# installs every tool a test needs, so a skip means a broken set-up.
# Four workers on two cores, one module each at a time (--dist loadfile): modules use distinct
# loopback ranges and free ports, and most of the suite's time is spent waiting on real time
# (brokers, outages, alarm durations). Measured at b2fc23c: 700 s with -n 2, 448 s with -n 4.
test: check
	PATH="/usr/sbin:$$PATH" ALTIWATCH_STRICT_SKIPS=1 $(PY) -m pytest -q -n 4 --dist loadfile

# The headline first: the real daemon end to end, MQTT telemetry on, 1,000 mixed miners and
# 200 per family against naive get_data() (about 15 min); then the harness figures (about
# 20 min), then the long reliability runs (issue 8's minutes-long versions of the fault, load
# and kill tests); smoke-sized versions of all three run in `make test`.
bench: setup
	PATH="/usr/sbin:$$PATH" $(PY) -m tests.benchmarks.e2e --miners 1000 --per-family 200
	PATH="/usr/sbin:$$PATH" $(PY) -m tests.benchmarks.run
	PATH="/usr/sbin:$$PATH" $(PY) -m tests.benchmarks.poll_schedule
	$(PY) -m tests.benchmarks.site_page
	PATH="/usr/sbin:$$PATH" $(PY) -m tests.benchmarks.reliability_long all

demo: setup
	PATH="/usr/sbin:$$PATH" $(PY) -m agent.demo

# The reference pages (docs/reference/*.md) are generated from the code: config models, metric
# families, MQTT topics and schemas, alarm rules, CLI parsers. Commit them with the change;
# a test fails when they are stale. `make docs` renders docs/ to site/ (strict: warnings fail).
docs-refs: setup
	$(PY) docs/generate.py

docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) $(TOOLS) dist site .mypy_cache .ruff_cache .pytest_cache
