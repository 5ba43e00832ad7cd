# Two entry points: `make demo` (main job) and `make test` (test suite). Both create .venv
# and install everything on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
REQS := requirements.txt requirements-nodeps.txt requirements-dev.txt pyproject.toml

.PHONY: install demo test lint fixup clean lite-env arm-env py36-env

$(STAMP): $(REQS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt -r requirements-dev.txt
	# paddleseg and paddleslim pin conflicting opencv versions: install them without deps.
	$(BIN)/python -m pip install --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --no-deps -e .
	touch $@

install: $(STAMP)

# Side environment of `--formats lite` (.venv-lite): paddlelite 2.13rc0 needs CPython 3.10.
PY310 ?= $(shell pyenv root 2>/dev/null)/versions/3.10.13/bin/python
LITE_VENV := .venv-lite
LITE_STAMP := $(LITE_VENV)/.installed
LITE_REQS := requirements-lite.txt

$(LITE_STAMP): $(LITE_REQS) pyproject.toml
	@$(PY310) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null || { \
		echo "lite-env: no CPython 3.10 at '$(PY310)'. Paddle Lite's paddlelite==2.13rc0 has" \
			"wheels for CPython 3.10 only: install one (pyenv install 3.10.13) or run" \
			"make lite-env PY310=/path/to/python3.10" >&2; exit 1; }
	test -x $(LITE_VENV)/bin/python || $(PY310) -m venv $(LITE_VENV)
	$(LITE_VENV)/bin/python -m pip install --quiet -r $(LITE_REQS)
	$(LITE_VENV)/bin/python -m pip install --quiet --no-deps paddleseg==2.8.0 paddleslim==2.6.0
	$(LITE_VENV)/bin/python -m pip install --quiet --no-deps -e .  # runs paddleseg_ext.export.lite_side
	touch $@

lite-env: $(LITE_STAMP)

# The emulated aarch64 board (.arm-env): Debian's arm64 CPython 3.11 under qemu-user with
# one interpreter per onnxruntime version, .arm-env/bin/python-ort-VERSION (the oldest the
# runtime supports, the JetPack 5 generation, the newest that runs under Debian 12's qemu).
# apt-get needs root the first time. tests/runtime/test_aarch64.py is skipped without it.
ARM_ENV := .arm-env
ARM_ORT_VERSIONS ?= 1.15.1 1.17.3 1.27.0
ARM_STAMP := $(ARM_ENV)/.installed

$(ARM_STAMP): deploy/emulated_board.sh
	PYTHON=$(BIN)/python bash deploy/emulated_board.sh $(ARM_ENV) $(ARM_ORT_VERSIONS)

arm-env: install $(ARM_STAMP)

# CPython 3.6 with requirements-py36.txt (.venv-py36): the 2023 LPCVC Nano's Python, where
# tests/runtime/test_py36.py runs the packaged solution and infer.py; skipped without it.
PY36 ?= $(shell pyenv root 2>/dev/null)/versions/3.6.15/bin/python
PY36_VENV := .venv-py36
PY36_STAMP := $(PY36_VENV)/.installed

$(PY36_STAMP): requirements-py36.txt
	@$(PY36) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 6))' 2>/dev/null || { \
		echo "py36-env: no CPython 3.6 at '$(PY36)': install one (pyenv install 3.6.15)" \
			"or run make py36-env PY36=/path/to/python3.6" >&2; exit 1; }
	test -x $(PY36_VENV)/bin/python || $(PY36) -m venv $(PY36_VENV)
	$(PY36_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "pip>=20.3,<22"
	$(PY36_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		--only-binary=:all: -r requirements-py36.txt
	touch $@

py36-env: $(PY36_STAMP)

demo: install
	$(BIN)/python tools/demo.py --save_dir output/demo

# The web demo on `make demo`'s export; SERVE_ARGS adds flags (tools/serve.py --help), e.g.
# make serve SERVE_ARGS="--port 8080 --model_dir output/other/export".
DEMO_EXPORT := output/demo/export
.PHONY: serve browser-deps

serve: install
	@test -f $(DEMO_EXPORT)/deploy.yaml || { echo "serve: no export in $(DEMO_EXPORT):" \
		"run make demo first" >&2; exit 1; }
	$(BIN)/python tools/serve.py --model_dir $(DEMO_EXPORT) $(SERVE_ARGS)

# Chromium and its WebDriver (Debian packages, as root) for tests/web/test_browser.py, which
# is skipped without them.
browser-deps:
	apt-get update
	apt-get install -y chromium chromium-driver

test: install
	@$(MAKE) --no-print-directory lite-env || echo "make test: no Paddle Lite side" \
		"environment, the Lite export tests will be skipped" >&2
	@$(MAKE) --no-print-directory arm-env || echo "make test: no emulated aarch64 board," \
		"the aarch64 tests will be skipped" >&2
	@$(MAKE) --no-print-directory py36-env || echo "make test: no CPython 3.6 environment," \
		"the Python 3.6 tests will be skipped" >&2
	$(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fixup: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf output
