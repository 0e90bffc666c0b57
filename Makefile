# Two commands: `make demo` (the main job) and `make test` (the test suite).
# `make docs` builds the documentation site into site/ (strict: any warning fails).
# Each creates or reuses the local virtual environment .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: demo test lint bench docs clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e ".[test,torch,deepwave,examples,bench]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/run_all.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check newtonkit newtonkit_torch tests benchmarks examples

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# The docs extra (MkDocs) is installed on the first `make docs` only; `make test` does not need it.
$(DOCS_STAMP): $(STAMP) pyproject.toml constraints.txt
	$(BIN)/python -m pip install -c constraints.txt -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) build site *.egg-info
