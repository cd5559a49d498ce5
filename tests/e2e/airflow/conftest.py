"""End-to-end Airflow tests: a temporary AIRFLOW_HOME with a migrated SQLite metadata database.

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
