# Two commands work on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# pip on these machines takes these two from local disk; install them first so that no
# other requirement pulls a different (multi-GB) torch build.
TORCH   := torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: venv demo test bench clean

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

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
