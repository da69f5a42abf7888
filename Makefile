# Two entry points for a fresh machine with Python >= 3.10:
#   make demo   create .venv if missing, install, run the offline demo (live dashboard on a terminal)
#   make test   same set-up, then the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tuiprune-installed

.PHONY: demo test bench clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# On a terminal the demo opens the live dashboard; redirected (CI, logs) it runs headless.
demo: $(STAMP)
	@if [ -t 1 ]; then $(BIN)/tuiprune watch configs/demo.toml; \
	else $(BIN)/tuiprune run configs/demo.toml; fi

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean-venv:
	rm -rf $(VENV)
