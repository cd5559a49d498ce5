"""The Lightning integration is an extra: carbon_sensors imports without it, and its absence is named."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import carbon_sensors, carbon_sensors.training, carbon_sensors.integrations
assert "lightning" not in sys.modules, "importing carbon_sensors imported lightning"
sys.modules["lightning"] = None  # as if the extra were not installed
try:
    import carbon_sensors.integrations.lightning
except ImportError as exc:
    print(exc)
else:
    raise SystemExit("imported without lightning")
"""


def test_carbon_sensors_never_imports_lightning_and_its_absence_names_the_extra() -> None:
    run = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "carbon-aware-trainer[lightning]" in run.stdout and "PyTorch Lightning" in run.stdout
