# Two set-up-and-go targets: each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The torch/torchvision pair pinned here installs from the local wheel cache
# on our machines; any torch>=2.4 works.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test setup docs clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test,plots,docs]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) examples/quickstart.py

test: setup
	$(PY) -m pytest -n auto

# The documentation site (docs/_build/html). SKSSL_DOCS_FULL=1 runs the examples at their full settings.
docs: setup
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) build *.egg-info docs/_build docs/generated docs/auto_examples
