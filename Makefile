# The README's commands. Two environments: Airflow 3.3.2 and Prefect 3.9.1 cannot share one (FastAPI pins).
PYTHON ?= python3
AF := .venv-airflow
PF := .venv-prefect
PYTEST_ARGS ?= -q

.PHONY: setup demo test test-airflow test-prefect lint bench clean

setup: $(AF)/.installed $(PF)/.installed

# Rebuilt only when pyproject.toml changes; `pip install -e` makes code edits visible without a rebuild.
$(AF)/.installed: pyproject.toml
	test -x $(AF)/bin/python || $(PYTHON) -m venv $(AF)
	$(AF)/bin/pip install -q --disable-pip-version-check -e ".[airflow,airflow-celery,airflow-fab,torch,lightning,mlflow,dev]"
	touch $@

$(PF)/.installed: pyproject.toml
	test -x $(PF)/bin/python || $(PYTHON) -m venv $(PF)
	$(PF)/bin/pip install -q --disable-pip-version-check -e ".[prefect,prefect-s3,torch,transformers,mlflow,dev]"
	touch $@

# The nightly-retraining DAG through `airflow dags test` on replayed real grid data (about a minute).
demo: setup
	$(AF)/bin/python scripts/demo_airflow.py

# mypy runs per environment (Airflow code where Airflow is installed, Prefect likewise), and once per
# folder with its own conftest.py, since mypy refuses two modules of one name in a run.
lint: setup
	$(AF)/bin/ruff check .
	$(AF)/bin/ruff format --check .
	$(AF)/bin/mypy carbon_sensors carbon_operators dags scripts benchmarks tests/core tests/airflow tests/frameworks_lightning
	$(AF)/bin/mypy tests/e2e/airflow
	$(PF)/bin/mypy carbon_flows flows tests/prefect tests/frameworks_transformers
	$(PF)/bin/mypy tests/e2e/prefect

test-airflow: setup
	$(AF)/bin/python -m pytest $(PYTEST_ARGS) tests/core tests/airflow tests/frameworks_lightning tests/e2e/airflow

test-prefect: setup
	$(PF)/bin/python -m pytest $(PYTEST_ARGS) tests/core tests/prefect tests/frameworks_transformers tests/e2e/prefect

test: lint test-airflow test-prefect

bench: setup
	$(AF)/bin/python benchmarks/run_all.py

clean:
	rm -rf $(AF) $(PF) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
