# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STORE  ?= demo-store
PORT   ?= 8501
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: demo test test-slow bench venv clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/organizer index sample_data --store $(STORE)
	$(BIN)/organizer cluster --store $(STORE)
	$(BIN)/organizer ui --store $(STORE) --port $(PORT)

test: venv
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-slow: venv
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow

bench: venv
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(STORE) test-artifacts
