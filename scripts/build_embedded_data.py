"""Rebuild the package's embedded traces from the recorded real data in ../shared/data.

Why a script: the wheel ships compact copies (gzip CSV, UTC ISO timestamps), and anyone must be able to
check that they are exactly the recorded values. Run: python scripts/build_embedded_data.py [DATA_DIR]
"""

from __future__ import annotations

import csv
import gzip
import sys
from pathlib import Path

# Folder file prefix -> Electricity Maps zone key. IN-WE and JP-TK are left out: 100% modelled.
EM_FILES = {
    "AU-NSW": "AU-NSW",
    "AU-VIC": "AU-VIC",
    "BR-SP": "BR-CS",
    "CA-ON": "CA-ON",
    "CL-SIC": "CL-SEN",
    "DE-LU": "DE",
    "GB": "GB",
    "KR": "KR",
    "SG": "SG",
    "US-CAL-CISO": "US-CAL-CISO",
    "US-MIDA-PJM": "US-MIDA-PJM",
    "US-NY-NYIS": "US-NY-NYIS",
    "US-TEX-ERCO": "US-TEX-ERCO",
    "ZA": "ZA",
}
OUT = Path(__file__).resolve().parent.parent / "carbon_sensors" / "data"


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    # mtime=0 keeps the gzip bytes reproducible, so a rebuild with the same input changes nothing.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write((",".join(header) + "\n").encode())
        gz.write("".join(",".join(r) + "\n" for r in rows).encode())


def build_electricitymaps(data: Path) -> None:
    folder = data / "electricitymaps-green-dcc"
    for prefix, zone in EM_FILES.items():
        with open(folder / f"{prefix}_2023_hourly.csv", encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            rows = []
            for rec in reader:
                if rec["Zone Id"] != zone:
                    raise SystemExit(f"{prefix}: expected zone {zone}, found {rec['Zone Id']}")
                ts = rec["Datetime (UTC)"].replace(" ", "T")[:16] + "Z"
                rows.append(
                    [
                        ts,
                        rec["Carbon Intensity gCO₂eq/kWh (LCA)"],
                        rec["Carbon Intensity gCO₂eq/kWh (direct)"],
                    ]
                )
        _write(OUT / f"electricitymaps-2023-{zone}.csv.gz", ["timestamp", "lifecycle", "direct"], rows)


def build_neso(data: Path) -> None:
    with open(data / "neso-carbon-intensity-gb" / "neso_2023_national_intensity.csv", newline="") as f:
        rows = [
            [r["from"].replace(" ", "T")[:16] + "Z", r["forecast"], r["actual"]] for r in csv.DictReader(f)
        ]
    _write(OUT / "neso-2023-GB.csv.gz", ["timestamp", "forecast", "actual"], rows)


if __name__ == "__main__":
    data_dir = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    OUT.mkdir(parents=True, exist_ok=True)
    build_electricitymaps(data_dir)
    build_neso(data_dir)
    print(f"wrote {len(list(OUT.glob('*.csv.gz')))} files to {OUT}")
