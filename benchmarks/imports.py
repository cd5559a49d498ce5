"""Import cost: each public Airflow/Prefect module of this project, and each example DAG/flow file, timed in
a fresh process (`python benchmarks/imports.py`, prints JSON).

Why: the dag-processor parses every DAG file in a fresh process, again and again, and a Prefect worker loads the
flow file for every run; seconds at import are paid each time. Figures:
- a module's import time in a fresh process, split into the framework import (`airflow.sdk` or `prefect`,
  first) and the module after it: `added_s`, what our package costs on top, measured in the same process so
  the framework's own (noisy, seconds) import time does not blur it;
- an example file's parse time (framework already imported, as in the dag-processor) against an empty DAG or
  flow (`added_s`, the target is under 0.5 s) and against a plain one that uses the same framework parts
  without this package (an operator and a task: `added_vs_plain_s`, what this package itself costs);
- `heavy` lists torch/scikit-learn if a module or file loaded them (it should list nothing).
Each figure is the median of `--repeats` fresh processes. Each face runs in its own virtual environment
(Airflow and Prefect cannot share one); a face whose environment is missing is reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import pkgutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET_ADDED_S = 0.5
FACES = {
    "airflow": {
        "python": REPO / ".venv-airflow" / "bin" / "python",
        "framework": "airflow.sdk",
        "package": "carbon_operators",
        "examples": REPO / "dags",
        "empty": "from airflow.sdk import DAG\n\nwith DAG('empty', schedule=None):\n    pass\n",
        "plain": (
            "from airflow.providers.standard.operators.empty import EmptyOperator\n"
            "from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync\n"
            "from airflow.sdk import DAG, task\n\n@task\ndef work() -> None:\n    pass\n\n"
            "with DAG('plain', schedule=None):\n"
            "    DateTimeSensorAsync(task_id='wait', target_time='2030-01-01T00:00Z') >> EmptyOperator(task_id='e')"
            " >> work()\n"
        ),
    },
    "prefect": {
        "python": REPO / ".venv-prefect" / "bin" / "python",
        "framework": "prefect",
        "package": "carbon_flows",
        "examples": REPO / "flows",
        "empty": "from prefect import flow\n\n\n@flow\ndef empty() -> None:\n    pass\n",
        "plain": (
            "from prefect import flow, task\nfrom prefect.artifacts import create_markdown_artifact\n\n"
            "@task\ndef work() -> None:\n    create_markdown_artifact('done')\n\n"
            "@flow\ndef plain() -> None:\n    work()\n"
        ),
    },
}
# Run in the fresh process: import `setup` (timed apart), then time importing `module` or running `path`.
PROBE = """
import json, runpy, sys, time
setup, module, path = sys.argv[1:4]
start = time.perf_counter()
if setup:
    __import__(setup)
setup_seconds = time.perf_counter() - start
start = time.perf_counter()
if module:
    __import__(module)
else:
    runpy.run_path(path, run_name="benchmark")
elapsed = time.perf_counter() - start
heavy = [m for m in ("torch", "sklearn") if m in sys.modules]
print(json.dumps({"setup_seconds": setup_seconds, "seconds": elapsed, "heavy": heavy}))
"""


def timed(
    python: Path, env: dict[str, str], *, setup: str = "", module: str = "", path: str = ""
) -> dict[str, Any]:
    """One fresh process: seconds taken and the heavy libraries it loaded."""
    done = subprocess.run(
        [str(python), "-c", PROBE, setup, module, path],
        capture_output=True, text=True, env=env, cwd=Path(path).parent if path else REPO, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{module or path} failed to import:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def median_of(repeats: int, python: Path, env: dict[str, str], **what: str) -> dict[str, Any]:
    runs = [timed(python, env, **what) for _ in range(repeats)]
    return {
        "setup_seconds": round(statistics.median(r["setup_seconds"] for r in runs), 3),
        "seconds": round(statistics.median(r["seconds"] for r in runs), 3),
        "heavy": runs[-1]["heavy"],
    }


def face_figures(face: dict[str, Any], repeats: int, work: Path) -> dict[str, Any]:
    python: Path = face["python"]
    if not python.exists():
        return {"skipped": f"{python} not found (run `make setup`)"}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        "AIRFLOW_HOME": str(work / "airflow-home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    framework: str = face["framework"]
    modules = {}
    for info in pkgutil.iter_modules([str(REPO / face["package"])], f"{face['package']}."):
        figure = median_of(repeats, python, env, setup=framework, module=info.name)
        modules[info.name] = {
            "import_s": round(figure["setup_seconds"] + figure["seconds"], 3),
            "framework_s": figure["setup_seconds"],
            "added_s": figure["seconds"],
            "heavy": figure["heavy"],
        }
    bases = {}
    for kind in ("empty", "plain"):
        base_file = work / f"{kind}_{face['package']}.py"
        base_file.write_text(face[kind])
        bases[kind] = median_of(repeats, python, env, setup=framework, path=str(base_file))["seconds"]
    files = {}
    for example in sorted(Path(face["examples"]).glob("*.py")):
        figure = median_of(repeats, python, env, setup=framework, path=str(example))
        files[example.name] = {
            "parse_s": figure["seconds"],
            "added_s": round(figure["seconds"] - bases["empty"], 3),
            "added_vs_plain_s": round(figure["seconds"] - bases["plain"], 3),
            "heavy": figure["heavy"],
            "within_target": figure["seconds"] - bases["empty"] < TARGET_ADDED_S,
        }
    return {
        "modules": modules,
        "empty_example_parse_s": bases["empty"],
        "plain_example_parse_s": bases["plain"],
        "examples": files,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per figure (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="carbon-imports-") as tmp:
        faces = {name: face_figures(face, args.repeats, Path(tmp)) for name, face in FACES.items()}
    load = os.getloadavg()
    doc = {
        "benchmark": "imports",
        "repeats": args.repeats,
        "target_added_s": TARGET_ADDED_S,
        "machine": {"cpus": os.cpu_count(), "load_average_1min": round(load[0], 2)},
        **faces,
    }
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
