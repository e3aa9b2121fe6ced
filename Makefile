# Everything runs inside a project-local virtual environment that these rules create.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install install-tpu test lint demo bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# On a Cloud TPU VM: the package on TensorFlow's TPU build. tensorflow-text (keras-hub's
# tokenizer ops) is built against one TensorFlow release and asks for the plain `tensorflow`
# package, so the 2.20 stack is resolved with it first and its TensorFlow then swapped for
# tensorflow-tpu of the same release, with the libtpu it names (newer libtpu releases follow
# JAX and are not promised to load in this TensorFlow).
TPU_TENSORFLOW := 2.20.0
LIBTPU := 0.0.14
install-tpu:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e . "tensorflow==$(TPU_TENSORFLOW)" \
		"tensorflow-text>=2.20,<2.21" "tensorboard>=2.20,<2.21"
	$(PY) -m pip uninstall --quiet --yes tensorflow
	$(PY) -m pip install --quiet "tensorflow-tpu==$(TPU_TENSORFLOW)" "libtpu==$(LIBTPU)"
	$(PY) -c "from neo_keras.accelerators import make_strategy; \
		print(make_strategy('tpu').num_replicas_in_sync, 'TPU cores')"
	touch $(STAMP)  # so that `make demo` keeps this install rather than reinstalling 2.21

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: $(STAMP) lint
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m neo_keras.demo

# Each benchmark prints its figures beside its peer's, measured in the same run.
bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[test,bench]"
	$(PY) benchmarks/forward.py
	$(PY) benchmarks/train.py
	$(PY) benchmarks/memory.py
	$(PY) benchmarks/generate.py
	$(PY) benchmarks/decode_step.py
	$(PY) benchmarks/execute.py
	$(PY) benchmarks/evaluate.py --problems 8 --split_check
	$(PY) benchmarks/data.py

clean:
	rm -rf $(VENV) build *.egg-info
