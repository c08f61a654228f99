# Two commands work on a fresh machine: `make demo` and `make test`.
# `make gpu-check` checks a GPU machine (docs/gpu-check.md); on a machine whose own Python
# already has torch (no venv to build): `make gpu-check NOVENV=1 PY=python3`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# pip on these machines takes these two from local disk; install them first so that no
# other requirement pulls a different (multi-GB) torch build.
TORCH   := torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=
# gpu-check: NOVENV=1 runs $(PY) as it is, with this checkout on PYTHONPATH
NOVENV  ?=
GPU_CHECK_ARGS ?=
GPU_CHECK_OUT  ?= gpu-check.json
GPU_CHECK_PY   := $(if $(NOVENV),$(PY),$(BIN)/python)

.PHONY: venv demo test bench gpu-check clean

$(BIN)/ktg: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -qq --upgrade pip
	$(BIN)/pip install -qq $(TORCH)
	$(BIN)/pip install -qq -e '.[test]'
	touch $(BIN)/ktg

venv: $(BIN)/ktg

demo: venv
	RAY_AUTH_MODE=disabled $(BIN)/ktg search --preset quick

test: venv
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: venv
	$(BIN)/ktg bench

gpu-check: $(if $(NOVENV),,venv)
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} RAY_AUTH_MODE=disabled \
	  $(GPU_CHECK_PY) -m ktg_search.studies.gpucheck -o $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
