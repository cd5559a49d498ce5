"""`report`: recompute a training run's emissions report from its JSONL timeline, at any later time."""

from __future__ import annotations

import argparse
from typing import Any

from carbon_sensors.cli.output import print_json, print_table
from carbon_sensors.emissions import read_jsonl


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    report = commands.add_parser(
        "report", parents=[common], help="recompute an emissions report from a run's emissions.jsonl"
    )
    report.add_argument("timeline", help="the run's timeline, e.g. <checkpoint_dir>/emissions.jsonl")
    report.add_argument("--json", action="store_true", help="print JSON")
    report.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    doc = read_jsonl(args.timeline).report().to_dict()
    if args.json:
        print_json(doc)
        return 0
    rows = [{"field": key, "value": _text(value)} for key, value in doc.items()]
    print_table(rows, ["field", "value"])
    return 0


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)
