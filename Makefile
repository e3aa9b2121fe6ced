# Everything runs inside a project-local virtual environment that these rules create.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP) lint
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m neo_keras.demo

# Each benchmark prints its figures beside its peer's, measured in the same run.
bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[test,bench]"
	$(PY) benchmarks/forward.py
	$(PY) benchmarks/train.py
	$(PY) benchmarks/generate.py
	$(PY) benchmarks/execute.py
	$(PY) benchmarks/data.py

clean:
	rm -rf $(VENV) build *.egg-info
