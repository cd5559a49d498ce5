"""`now` and `forecast`: ask a live provider (or the replayed trace) what the grid says for a zone.

Credentials and base URLs come from the environment (ELECTRICITYMAPS_API_TOKEN, WATTTIME_USERNAME/_PASSWORD,
CARBON_AWARE_*_URL); nothing secret is ever taken on the command line, where shells keep history.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from carbon_sensors.cli.output import add_output_options, print_json, show_signal
from carbon_sensors.providers.registry import SOURCE_NAMES, make_source
from carbon_sensors.signal import UNIT
from carbon_sensors.timeutil import parse_duration, parse_utc

PROVIDER_ENV = "CARBON_AWARE_PROVIDER"


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    provider = argparse.ArgumentParser(add_help=False)
    provider.add_argument(
        "--zone", required=True, help="grid zone, e.g. DE (Electricity Maps), CAISO_NORTH, GB"
    )
    provider.add_argument(
        "--provider",
        choices=SOURCE_NAMES,
        default=os.environ.get(PROVIDER_ENV, "trace"),
        help=f"where to ask (default: ${PROVIDER_ENV} or trace, which needs CARBON_AWARE_REPLAY_START)",
    )

    now = commands.add_parser(
        "now", parents=[common, provider], help="the current carbon intensity of a zone"
    )
    now.add_argument("--json", action="store_true", help="print JSON")
    now.add_argument(
        "--max-age", help="accept a value this old from a live API, e.g. 6h (default: the provider's limit)"
    )
    now.set_defaults(handler=run_now)

    forecast = commands.add_parser(
        "forecast", parents=[common, provider], help="the provider's carbon-intensity forecast for a zone"
    )
    forecast.add_argument("--start", help="ISO 8601 with zone (default: now)")
    forecast.add_argument("--horizon", default="24h", help="how far ahead, e.g. 24h, 48h (default 24h)")
    add_output_options(forecast, "the forecast")
    forecast.set_defaults(handler=run_forecast)


def run_now(args: argparse.Namespace) -> int:
    options = {} if args.max_age is None else {"max_age": parse_duration(args.max_age, "--max-age")}
    reading = make_source(args.provider, **options).latest(args.zone)
    if args.json:
        print_json(reading.to_dict())
    else:
        print(
            f"{reading.zone}: {reading.value:.1f} {UNIT} ({reading.kind.value}) for the period from "
            f"{reading.period_start.isoformat()}, from {reading.source}"
        )
    return 0


def run_forecast(args: argparse.Namespace) -> int:
    start = parse_utc(args.start, "--start") if args.start else None
    horizon = parse_duration(args.horizon, "--horizon")
    signal = make_source(args.provider).forecast(args.zone, start, horizon)
    show_signal(signal, as_json=args.json, plot=args.plot)
    return 0
