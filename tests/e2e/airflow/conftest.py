"""End-to-end Airflow tests: a temporary AIRFLOW_HOME, migrated SQLite (the live tests: PostgreSQL).

AIRFLOW_HOME must be set before anything imports airflow, hence at import time here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from scratch_database import scratch_database

REPO = Path(__file__).resolve().parents[3]
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="carbon-airflow-e2e-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    """`airflow db migrate` once per session (about 5 s on SQLite)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    if not (home / ".carbon-migrated").exists():
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, timeout=300
        )
        (home / ".carbon-migrated").touch()
    yield home


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new database on the machine's PostgreSQL, dropped afterwards; its SQLAlchemy URL.

    The live tests run several Airflow components at once: on SQLite they race for its one write lock
    (seen as a 'Database error' 500 from the REST API), so they use PostgreSQL, as a deployment would.
    """
    with scratch_database() as database:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}"
