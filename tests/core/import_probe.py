"""Run as a script: import every module of a package (and run the given example files, as a DAG processor or a
Prefect worker loads them), then print which heavy libraries that loaded, as JSON.

`python import_probe.py carbon_operators dags/a.py ...` -> {"modules": [...], "heavy": ["torch", ...]}
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import runpy
import sys

HEAVY = ("torch", "sklearn", "lightning", "transformers", "mlflow")


def main(package: str, files: list[str]) -> None:
    root = importlib.import_module(package)
    names = [m.name for m in pkgutil.iter_modules(root.__path__, f"{package}.")]
    for name in names:
        importlib.import_module(name)
    for path in files:
        runpy.run_path(path, run_name="import_probe")  # not "__main__": example files run a demo there
    print(json.dumps({"modules": names, "heavy": [m for m in HEAVY if m in sys.modules]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
