# wxpay-native: two commands.
#   make run   set everything up, then start the service and the simulator
#   make test  set everything up, then run every check
# Everything is installed into .venv at the versions pinned in
# requirements.lock, so a fresh machine gets exactly what was tested.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CHECKED := domain adapters entrypoints simulator

.PHONY: run test lint typecheck pytest system-deps bench lock clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps \
		--no-build-isolation -e .
	touch $@

run: $(STAMP)
	$(BIN)/python scripts/run_demo.py

system-deps:
	scripts/ensure-system-deps

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) system-deps
	$(BIN)/python -m pytest

test: lint typecheck pytest

# Ratios against wechatpy doing the same job; printed, never asserted.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_protocol

# Re-pin every dependency after changing pyproject.toml.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --disable-pip-version-check \
		--upgrade setuptools ".[test,browser,databases]"
	.lock-venv/bin/pip freeze --all --exclude-editable \
		| grep -v -E '^(pip|wxpay-native)[= ]' > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
