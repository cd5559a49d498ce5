"""`report`: recompute a training run's emissions report from its JSONL timeline, at any later time."""

from __future__ import annotations

import argparse
from typing import Any

from carbon_sensors.cli.output import print_json, print_table
from carbon_sensors.emissions import read_jsonl, report_lines


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    report = commands.add_parser(
        "report", parents=[common], help="recompute an emissions report from a run's emissions.jsonl"
    )
    report.add_argument("timeline", help="the run's timeline, e.g. <checkpoint_dir>/emissions.jsonl")
    report.add_argument("--json", action="store_true", help="print JSON (full precision, kWh and gCO2eq)")
    report.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    doc = read_jsonl(args.timeline).report().to_dict()
    if args.json:
        print_json(doc)
        return 0
    rows = [{"field": label, "value": text} for label, text in report_lines(doc)]
    print_table(rows, ["field", "value"])  # units for people; --json keeps full precision
    return 0
