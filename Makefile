# air-align: `make demo` runs the main job on its defaults, `make test` runs the tests.
# Both create (or reuse) a local virtual environment in .venv and install everything they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.air-align-installed

.PHONY: demo test test-slow lint format theory install clean gpu-kit

$(STAMP): pyproject.toml constraints.txt requirements-data.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint constraints.txt -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps -r requirements-data.txt
	$(PY) -m pip install --quiet --constraint constraints.txt reasoning-gym==0.1.25
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/air-align demo

theory: $(STAMP)
	$(VENV)/bin/air-align theory

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The wheels (and DeepSpeed's sdist) that the GPU machine lacks, for scripts/gpu_check.sh there (docs/performance.md).
gpu-kit:
	PYTHON=$(PYTHON) bash scripts/gpu_kit.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
