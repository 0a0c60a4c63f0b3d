# Two commands for a newcomer: `make demo` and `make test`. Each bootstraps what it needs.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
STAMP := .venv/.synced-$(shell cat uv.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-unit lint format airflow mlflow-ui serve bento env clean

demo: $(STAMP)  ## run the whole platform once, end to end
	$(UV) run --frozen chaintrade demo

test: $(STAMP)  ## unit, integration and end-to-end tests
	$(UV) run --frozen pytest -q

test-unit: $(STAMP)
	$(UV) run --frozen pytest -q tests/unit

lint: $(STAMP)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy

format: $(STAMP)
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

mlflow-ui: $(STAMP)  ## browse runs and registered models at http://127.0.0.1:5000
	$(UV) run --frozen mlflow ui --backend-store-uri sqlite:///$(CURDIR)/var/mlflow/mlflow.db --port 5000

airflow: $(STAMP)  ## the Airflow UI with every DAG, unpaused (user admin; password printed, also in var/airflow/simple_auth_manager_passwords.json.generated)
	$(UV) run --frozen python -c 'from chaintrade.orchestration import run_standalone; raise SystemExit(run_standalone())'

serve: $(STAMP)  ## serve the champion model on http://127.0.0.1:3000
	$(UV) run --frozen bentoml serve serving.service:ChaintradeService --port 3000

bento: $(STAMP)  ## a Bento of the serving service (then `bentoml containerize chaintrade:latest`)
	$(UV) export --frozen --no-dev --extra platform --no-hashes --no-emit-project \
	  | grep -i -E '^(bentoml|feast|mlflow|xgboost|pandas|numpy|pyarrow|pydantic|pydantic-settings|psycopg|psycopg-binary|httpx|prometheus-client|msgspec|scikit-learn|duckdb|ibis-framework|redis|matplotlib|tenacity|typer|rich)==' \
	  > serving/requirements.txt
	$(UV) run --frozen bentoml build .

env: $(STAMP)

$(STAMP): uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	@rm -f .venv/.synced-*; touch $@

$(UV):
	@echo "uv not found: installing it with pip (python -m pip install --user uv)"
	$(PYTHON) -m pip install --user --quiet uv

clean:  ## remove all local state (var/) — models, stores, databases
	rm -rf var
