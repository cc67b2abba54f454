# Everyday commands. Each works from a fresh clone (it creates .venv when missing).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo serve test lint schema bench clean

$(BIN)/recon: requirements.lock requirements-dev.lock pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements-dev.lock -e .

install: $(BIN)/recon

demo: install
	$(BIN)/recon demo

serve: install
	$(BIN)/recon serve

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench
	$(BIN)/mypy

schema: install
	$(BIN)/python -m service.export_schema > schema.graphql

bench: install
	$(BIN)/python bench/bench_matcher.py
	$(BIN)/python bench/bench_ingest.py

clean:
	rm -rf $(VENV) .recon .pytest_cache .mypy_cache .ruff_cache
