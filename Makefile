# The README's two commands. Each creates .venv on first use and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: demo test benchmarks clean

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

clean:
	rm -rf $(VENV) demo-output .pytest_cache
