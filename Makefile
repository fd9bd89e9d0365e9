# The README's two commands. Each creates .venv on first use and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: demo test benchmarks ipu-env test-ipu test-timm clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed-train: setup.cfg constraints.txt | $(BIN)/activate
	$(PIP) install --quiet -c constraints.txt -e ".[train]"
	touch $@

$(VENV)/.installed-test: setup.cfg constraints.txt | $(BIN)/activate
	$(PIP) install --quiet -c constraints.txt -e ".[train,test,space]"
	touch $@ $(VENV)/.installed-train

demo: $(VENV)/.installed-train  ## the offline demo: synthetic release, tiny ViT, CPU, about a minute
	$(BIN)/python training/run.py training/configs/demo.json

test: $(VENV)/.installed-test  ## the test suite, CPU only, no network
	$(BIN)/python -m pytest

benchmarks: $(VENV)/.installed-test  ## every benchmark; figures go to stdout (see benchmarks/README.md)
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

# The IPU environment: optimum-graphcore 0.7.1 and the transformers 4.29 it pins, beside (never inside) .venv.
# Graphcore's poptorch and popart are not on PyPI; test-ipu puts stand-ins for them on the path (tests/ipu_sdk_stand_in).
IPU_VENV ?= .venv-ipu
IPU_BIN := $(IPU_VENV)/bin
IPU_DATA ?= .cache/ipu-env

$(IPU_VENV)/.installed: requirements-ipu.txt constraints-ipu.txt setup.cfg
	rm -rf $(IPU_VENV)
	$(PYTHON) -m venv $(IPU_VENV)
	$(IPU_BIN)/python -m pip install --quiet --upgrade pip
	$(IPU_BIN)/python -m pip install --quiet -c constraints-ipu.txt -r requirements-ipu.txt
	$(IPU_BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

ipu-env: $(IPU_VENV)/.installed  ## .venv-ipu: optimum-graphcore 0.7.1, transformers 4.29, datasets 3 (CPU torch)

# The IPU tests read a Parquet export written by this project in the main environment, as an IPU user's would be.
test-ipu: $(IPU_VENV)/.installed $(VENV)/.installed-train  ## the IPU stack's tests, in .venv-ipu, up to the device
	rm -rf $(IPU_DATA)
	$(BIN)/python tests/ipu_env/make_export.py $(IPU_DATA)
	NIH_CHESTXRAY14_IPU_DATA=$(abspath $(IPU_DATA)) $(IPU_BIN)/python -m pytest -c tests/ipu_env/pytest.ini tests/ipu_env

# Starting from timm checkpoints: timm and torchvision in an environment of their own. PyPI's torchvision is built
# for CUDA; beside the CPU-only torch of constraints.txt it can't import, and transformers imports it wherever it is
# installed, so it stays out of .venv (which `make demo` uses). tests/timm_env/conftest.py makes it importable.
TIMM_VENV ?= .venv-timm
TIMM_BIN := $(TIMM_VENV)/bin

$(TIMM_VENV)/.installed: setup.cfg constraints.txt
	rm -rf $(TIMM_VENV)
	$(PYTHON) -m venv $(TIMM_VENV)
	$(TIMM_BIN)/python -m pip install --quiet --upgrade pip
	$(TIMM_BIN)/python -m pip install --quiet -c constraints.txt -e ".[train,test,timm]"
	touch $@

test-timm: $(TIMM_VENV)/.installed  ## timm checkpoints: load, fine-tune, publish, heatmaps; in .venv-timm
	$(TIMM_BIN)/python -m pytest -c tests/timm_env/pytest.ini tests/timm_env

clean:
	rm -rf $(VENV) $(IPU_VENV) $(TIMM_VENV) demo-output .pytest_cache
