"""A throwaway database on the machine's PostgreSQL, for the e2e tests whose services share one.

Why PostgreSQL: several Airflow components (or a Prefect server and its workers) at once race for SQLite's
one write lock; a deployment would use PostgreSQL too. Importable from every test folder (pytest puts
`tests/` on the path with its conftest).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

HOST = ["-h", "127.0.0.1", "-U", "postgres"]


@contextmanager
def scratch_database() -> Iterator[str]:
    """A new database's name; it is dropped afterwards, even while clients are still connected."""
    name = f"carbon_e2e_{uuid.uuid4().hex[:12]}"
    subprocess.run(["createdb", *HOST, name], check=True, timeout=60)
    try:
        yield name
    finally:
        subprocess.run(["dropdb", "--force", *HOST, name], timeout=60)
