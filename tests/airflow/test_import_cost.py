"""Importing the Airflow provider's modules, or parsing the example DAGs, loads neither torch nor scikit-learn.

Why: the dag-processor imports every DAG file on every parse; torch (5.9 s) and scikit-learn (2.5 s) loaded at
module level made `import carbon_operators.training` take 13.4 s and DAG parses 6.8-15.9 s on a loaded machine.
A behaviour test (what is loaded), not a timing test: `benchmarks/imports.py` measures the times.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE = REPO / "tests" / "core" / "import_probe.py"


def test_provider_modules_and_example_dags_import_without_torch_or_sklearn() -> None:
    dags = sorted(str(p) for p in (REPO / "dags").glob("*.py"))
    done = subprocess.run(
        [sys.executable, str(PROBE), "carbon_operators", *dags],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert {"carbon_operators.training", "carbon_operators.window", "carbon_operators.sensors"} <= set(
        found["modules"]
    )
    assert found["heavy"] == [], f"loaded at import: {found['heavy']}"
