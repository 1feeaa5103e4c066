# Kesher: `make demo` to try it, `make test` to run the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install services chromium bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/kesher demo --serve

services:
	bash scripts/ensure-services.sh

chromium:
	bash scripts/ensure-chromium.sh

test: $(STAMP) services chromium
	$(BIN)/pytest -n 2 --dist loadgroup

bench: $(STAMP) services
	$(BIN)/python bench/run.py

clean:
	rm -rf var .pytest_cache
