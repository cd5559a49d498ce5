"""`zones` and `history`: what data is available, and what it says for a time range."""

from __future__ import annotations

import argparse
from typing import Any

from tqdm import tqdm

from carbon_sensors import embedded
from carbon_sensors.cli.output import add_output_options, print_json, print_table, show_signal
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.timeutil import parse_utc
from carbon_sensors.traces import read_trace


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    zones = commands.add_parser(
        "zones", parents=[common], help="list the zones with data, and where the data comes from"
    )
    zones.add_argument("--json", action="store_true", help="print JSON instead of a table")
    zones.set_defaults(handler=run_zones)

    history = commands.add_parser(
        "history", parents=[common], help="show recorded carbon intensity for a zone and time range"
    )
    history.add_argument("--zone", required=True, help="grid zone, e.g. DE, GB, US-CAL-CISO (see `zones`)")
    history.add_argument("--start", required=True, help="ISO 8601 with zone, e.g. 2023-06-01T00:00Z")
    history.add_argument("--end", required=True, help="ISO 8601 with zone (exclusive)")
    history.add_argument(
        "--dataset", choices=embedded.DATASETS, help="embedded dataset (default: first match)"
    )
    history.add_argument("--column", help="value column, e.g. direct (Electricity Maps) or forecast (NESO)")
    history.add_argument("--trace", help="read this trace file instead of the embedded data")
    history.add_argument("--assume-utc", action="store_true", help="treat timestamps without offset as UTC")
    add_output_options(history, "the series")
    history.set_defaults(handler=run_history)


def run_zones(args: argparse.Namespace) -> int:
    rows = []
    for entry in tqdm(embedded.CATALOGUE, desc="reading embedded traces", unit="zone", leave=False):
        sig = embedded.load(entry.zone, dataset=entry.dataset)
        rows.append(
            {
                "zone": entry.zone,
                "source": entry.dataset,
                "kind": sig.kind.value,
                "resolution": f"{int(entry.resolution.total_seconds() // 60)}min",
                "start": sig.start.isoformat(),
                "end": sig.end.isoformat(),
                "columns": ",".join(entry.columns),
                "basis": entry.basis,
                "licence": entry.licence,
            }
        )
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["zone", "source", "kind", "resolution", "start", "end", "columns"])
        print(f"\n{len(rows)} embedded traces (recorded real data; see `--json` for basis and licence).")
        print("Live sources: electricitymaps, watttime, uk (NESO) with credentials or the offline default.")
    return 0


def run_history(args: argparse.Namespace) -> int:
    start, end = parse_utc(args.start, "--start"), parse_utc(args.end, "--end")
    if args.trace:
        whole = read_trace(args.trace, zone=args.zone, column=args.column, assume_utc=args.assume_utc)
        provider = TraceProvider(signals={args.zone: whole})
    else:
        provider = TraceProvider(dataset=args.dataset, column=args.column)
    signal = provider.history(args.zone, start, end)
    show_signal(signal, as_json=args.json, plot=args.plot)
    return 0
