# Everything a fresh machine needs is installed by these targets: a venv in .venv, pip packages,
# Azurite from npm (pinned in package.json / package-lock.json), and checkov in .venv-iac.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
IAC_VENV := .venv-iac
PORT ?= 7071

.PHONY: setup run test lint bench fuzz openapi iac-check clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(IAC_VENV)/.installed: requirements-iac.txt
	$(PYTHON) -m venv $(IAC_VENV)
	$(IAC_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(IAC_VENV)/bin/python -m pip install --quiet -r requirements-iac.txt
	touch $@

setup: $(VENV)/.installed node_modules/.installed $(IAC_VENV)/.installed

run: $(VENV)/.installed node_modules/.installed
	PORT=$(PORT) $(PY) -m localdev.run

test: setup
	CHECKOV=$(abspath $(IAC_VENV))/bin/checkov $(PY) -m pytest $(PYTEST_ARGS)

iac-check: $(IAC_VENV)/.installed
	cd infra && ../$(IAC_VENV)/bin/checkov --config-file .checkov.yaml

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy .

bench: $(VENV)/.installed node_modules/.installed
	$(PY) -m bench

# The suite runs the hostile-input fuzz with a few examples per endpoint; this is the long run.
fuzz: $(VENV)/.installed node_modules/.installed
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-500} $(PY) -m pytest -q tests/e2e/test_bad_input_fuzz.py

# The OpenAPI document (openapi.json, from the registered functions and functions/_contract.py) and
# the Swagger UI files /api/docs serves, copied from the pinned npm package: the deployment package
# has no node_modules. A unit test fails when either is stale.
DOCS_VENDOR := functions/static/docs/vendor
SWAGGER_UI_FILES := swagger-ui-bundle.js swagger-ui.css LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt
openapi: $(VENV)/.installed node_modules/.installed
	$(PY) -m functions._openapi
	mkdir -p $(DOCS_VENDOR)
	cp $(addprefix node_modules/swagger-ui-dist/,$(SWAGGER_UI_FILES)) $(DOCS_VENDOR)/
	node -p 'require("./node_modules/swagger-ui-dist/package.json").version' > $(DOCS_VENDOR)/VERSION

clean:
	rm -rf $(VENV) $(IAC_VENV) node_modules .localdev .mypy_cache .ruff_cache .pytest_cache
