# Two commands set up and run everything on a fresh machine: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test mutation bench clean

# The QAT tests' tensorflow-model-optimization runs on Keras 2 (tf-keras), which requires the
# full `tensorflow` package: --no-deps keeps tensorflow-cpu (their own deps are in the test extra).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,jax,beam]'
	$(PY) -m pip install --quiet --no-deps 'tensorflow-model-optimization>=0.8' 'tf-keras~=2.21.0'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m quantkit.demo

test: $(STAMP)
	$(PY) -m pytest -q

# The suite with every quantkit-written model fed noise instead of its input (tests/mutation.py):
# lists the tests that still pass; fails when more than 1 % of those that ran one do.
mutation: $(STAMP)
	$(PY) -m pytest -q -p tests.mutation

# The quick subset of the benchmark harness (MNIST and digits CNNs, MobileNetV3Small at 96 px;
# every mode, quantkit and tf.lite side by side) into benchmarks/results/latest/ (untracked).
# The committed results are refreshed deliberately: `$(PY) -m benchmarks.harness --out
# benchmarks/results`; `--all --out benchmarks/results/all` runs the whole matrix.
bench: $(STAMP)
	$(PY) -m benchmarks.harness

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
