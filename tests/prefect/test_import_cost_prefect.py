"""Importing the Prefect collection's modules, or loading the example flow files, loads neither torch nor
scikit-learn (a Prefect worker and `prefect deploy` load the flow files; torch belongs in the job factory)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE = REPO / "tests" / "core" / "import_probe.py"


def test_collection_modules_and_example_flows_import_without_torch_or_sklearn() -> None:
    flows = sorted(str(p) for p in (REPO / "flows").glob("*.py"))
    done = subprocess.run(
        [sys.executable, str(PROBE), "carbon_flows", *flows],
        capture_output=True, text=True, timeout=600, cwd=REPO / "flows",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert {"carbon_flows.training", "carbon_flows.wait"} <= set(found["modules"])
    assert found["heavy"] == [], f"loaded at import: {found['heavy']}"
