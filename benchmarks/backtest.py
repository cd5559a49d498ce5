"""Savings backtest over the 14 embedded Electricity Maps zones; prints the JSON of `carbon-aware backtest`.

Usage: python benchmarks/backtest.py [--forecast-mape 0.10] [--jobs 400] [--seed 0]
"""

from __future__ import annotations

import argparse

from carbon_sensors import embedded
from carbon_sensors.backtest import BacktestConfig, Trace, run_backtest
from carbon_sensors.cli.output import print_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--forecast-mape", type=float)
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    zones = [e.zone for e in embedded.CATALOGUE if e.dataset == embedded.ELECTRICITYMAPS]
    traces = [Trace(zone, embedded.load(zone)) for zone in zones]
    config = BacktestConfig(jobs=args.jobs, seed=args.seed, forecast_mape=args.forecast_mape)
    print_json(run_backtest(traces, config, progress=True))


if __name__ == "__main__":
    main()
