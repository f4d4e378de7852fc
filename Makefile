# Two commands do all set-up: `make run` starts the service, `make test` runs the tests.
# Both create ./.venv from Pipfile.lock the first time (pipenv, venv inside the project).
PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
SYNCED := $(VENV)/.synced
PIPENV_VERSION := 2026.10.3

.PHONY: run test bench lock clean

run: $(SYNCED)
	$(VENV_PYTHON) launch.py

# Tests run in TEST_PROCESSES pytest processes side by side (pytest-xdist), each test file
# whole in one of them: most of the suite's time is real processes waiting on real clocks.
TEST_PROCESSES ?= 2

test: $(SYNCED)
	./scripts/ensure-browser
	$(VENV_PYTHON) -m pytest -n $(TEST_PROCESSES) --dist loadfile $(PYTEST_ARGS)

$(SYNCED): Pipfile.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	test -x $(VENV_PYTHON) || $(PYTHON) -m venv $(VENV)
	$(VENV_PYTHON) -m pip install --quiet --disable-pip-version-check pipenv==$(PIPENV_VERSION)
	PIPENV_VENV_IN_PROJECT=1 PIPENV_VERBOSITY=-1 $(VENV_PYTHON) -m pipenv sync --dev
	$(VENV_PYTHON) -m pip install --quiet --no-deps --editable .
	touch $(SYNCED)

lock: $(SYNCED)
	PIPENV_VENV_IN_PROJECT=1 PIPENV_VERBOSITY=-1 $(VENV_PYTHON) -m pipenv lock

clean:
	rm -rf $(VENV) .pytest_cache

bench: $(SYNCED)
	$(VENV_PYTHON) -m bench.run $(BENCH_ARGS)
