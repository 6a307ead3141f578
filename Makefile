# Two commands do all set-up on a fresh Debian machine with Python 3.11:
#   make demo   build and release the demo datasets offline, into .d4c/
#   make test   install the tools the tests need (where possible), run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: env demo test test-tools lint docs bench clean

env: $(STAMP)

# The environment is rebuilt whenever a lock file changes; both locks carry hashes.
$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		-r requirements.lock -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: env
	$(BIN)/python -m d4c.demo

test-tools:
	bash scripts/install-test-tools.sh

test: env test-tools lint
	$(BIN)/python -m pytest

lint: env
	$(BIN)/ruff check scripts tests bench
	$(BIN)/mypy

docs: env
	$(BIN)/d4c validate --write-lint-docs docs/lints.md --write-field-docs docs/contributing.md

bench: env
	for b in bench/*/run.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .d4c build dist
