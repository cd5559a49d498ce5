"""The wheel a user installs: every subpackage, the embedded data under 3 MB, its attribution, entry points."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("carbon_sensors", "carbon_operators", "carbon_flows")


def test_wheel_ships_code_data_and_entry_points(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(src),
            "-w",
            str(tmp_path / "dist"),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("carbon_aware_trainer-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        data_bytes = sum(i.file_size for i in zf.infolist() if i.filename.startswith("carbon_sensors/data/"))
        entry_points = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    expected_modules = {str(p.relative_to(src)) for pkg in PACKAGES for p in (src / pkg).rglob("*.py")}
    assert expected_modules <= names, sorted(expected_modules - names)
    assert "carbon_sensors/data/ATTRIBUTION.md" in names
    assert "carbon_sensors/data/electricitymaps-2023-DE.csv.gz" in names
    assert "carbon_sensors/py.typed" in names
    assert 0 < data_bytes < 3 * 1024 * 1024
    assert "carbon-aware = carbon_sensors.cli:main" in entry_points
    assert "[apache_airflow_provider]" in entry_points and "[prefect.collections]" in entry_points
    assert "carbon_aware_trainer = carbon_operators.plugin:CarbonPlugin" in entry_points
