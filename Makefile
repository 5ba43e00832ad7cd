# Two entry points: `make demo` (main job) and `make test` (test suite). Both create .venv
# and install everything on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
REQS := requirements.txt requirements-nodeps.txt requirements-dev.txt pyproject.toml

.PHONY: install demo test lint fixup clean

$(STAMP): $(REQS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt -r requirements-dev.txt
	# paddleseg and paddleslim pin conflicting opencv versions: install them without deps.
	$(BIN)/python -m pip install --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --no-deps -e .
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/python tools/demo.py --save_dir output/demo

test: install
	$(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fixup: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf output
