"""Savings backtests that print the JSON of `carbon-aware backtest` (figures for the README's savings table).

    python benchmarks/backtest.py                         # history only, the 14 embedded zones, 2023
    python benchmarks/backtest.py --forecast-mape 0.10    # + a synthetic provider, errors shared across issues
    python benchmarks/backtest.py --held-out              # history only, Let's Wait Awhile GB/DE/FR 2020
    python benchmarks/backtest.py --forecast-issues ISSUES.csv --trace ACTUALS.csv   # real recorded issues

Every report names its policies' code path, its forecast source and (synthetic) its noise model and
calibration in `config`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from carbon_sensors import embedded
from carbon_sensors.backtest import BacktestConfig, Trace, run_backtest
from carbon_sensors.cli.output import print_json
from carbon_sensors.forecast.issues import read_forecast_issues
from carbon_sensors.traces import read_trace

HELD_OUT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lets-wait-awhile"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--forecast-mape", type=float)
    parser.add_argument(
        "--forecast-issues", help="recorded provider issues (with one --trace: their actuals)"
    )
    parser.add_argument("--trace", help="actuals file for --forecast-issues")
    parser.add_argument("--held-out", action="store_true", help="Let's Wait Awhile GB, DE, FR (2020)")
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.forecast_issues:
        issues = read_forecast_issues(args.forecast_issues)
        traces = [Trace(Path(args.trace).name, read_trace(args.trace), None, issues)]
    elif args.held_out:
        traces = [
            Trace(
                f"lets-wait-awhile-{name}",
                read_trace(HELD_OUT / f"{name}_ci.csv", zone=name, assume_utc=True),
            )
            for name in ("gb", "ger", "fr")
        ]
    else:
        zones = [e.zone for e in embedded.CATALOGUE if e.dataset == embedded.ELECTRICITYMAPS]
        traces = [Trace(zone, embedded.load(zone)) for zone in zones]
    config = BacktestConfig(
        jobs=args.jobs,
        seed=args.seed,
        forecast_mape=args.forecast_mape,
        forecast_issues=Path(args.forecast_issues).name if args.forecast_issues else None,
    )
    print_json(run_backtest(traces, config, progress=True))


if __name__ == "__main__":
    main()
