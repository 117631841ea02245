# Plain runner. `make demo` and `make test` each set up .venv on first use (and again
# whenever pyproject.toml or constraints.txt change), then run. Nothing else is needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medsam-focus-installed
# CI runs the slow tests too (they fit in its time budget); locally they are opt-in.
PYTEST_MARK := $(if $(CI),,-m "not slow")

.PHONY: setup demo test test-all lint format bench clean-venv

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/medsam-focus demo $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check medsam_focus tests bench scripts
	$(BIN)/ruff format --check medsam_focus tests bench scripts
	$(BIN)/python -m pytest $(PYTEST_MARK) $(ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check medsam_focus tests bench scripts
	$(BIN)/ruff format --check medsam_focus tests bench scripts

format: $(STAMP)
	$(BIN)/ruff format medsam_focus tests bench scripts
	$(BIN)/ruff check --fix medsam_focus tests bench scripts

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
