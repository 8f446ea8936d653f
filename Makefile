# Two set-up-and-go targets: each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The torch/torchvision pair pinned here installs from the local wheel cache
# on our machines; any torch>=2.4 works.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test setup clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test,plots]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) examples/quickstart.py

test: setup
	$(PY) -m pytest -n auto

clean:
	rm -rf $(VENV) build *.egg-info
