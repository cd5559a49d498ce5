"""`plan` and `backtest`: when to run a job, and how much each policy saves on recorded data."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from carbon_sensors import charts, embedded
from carbon_sensors.backtest import SHIPPED, BacktestConfig, Trace, run_backtest
from carbon_sensors.cli.output import (
    add_output_options,
    plot_signal,
    print_json,
    print_table,
    write_plot,
)
from carbon_sensors.errors import InvalidInputError
from carbon_sensors.forecast.combine import MODEL_HISTORY_DAYS, assemble_forecast
from carbon_sensors.forecast.issues import read_forecast_issues
from carbon_sensors.planner import Plan, plan_slots, plan_window
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.signal import IntensitySignal
from carbon_sensors.timeutil import parse_duration, parse_utc
from carbon_sensors.traces import read_trace


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    plan = commands.add_parser(
        "plan", parents=[common], help="the best time to run a job that must finish by a deadline"
    )
    plan.add_argument("--zone", required=True, help="grid zone, e.g. DE (see `zones`)")
    plan.add_argument("--duration", required=True, help="job length, e.g. 3h or 90min")
    plan.add_argument(
        "--deadline", required=True, help="finish-by time, ISO 8601 with zone, e.g. 2023-06-02T06:00Z"
    )
    plan.add_argument(
        "--now", help="plan as of this time (default: 24 h before the deadline on recorded data), ISO 8601"
    )
    plan.add_argument("--interruptible", action="store_true", help="the job may pause and resume")
    plan.add_argument("--min-chunk", default="1h", help="shortest run of an interruptible job (default 1h)")
    plan.add_argument(
        "--history-days",
        type=float,
        default=MODEL_HISTORY_DAYS,
        help=f"history our model is fitted on (default {MODEL_HISTORY_DAYS}, as the operators')",
    )
    plan.add_argument("--trace", help="read this trace file instead of the embedded data")
    add_output_options(plan, "forecast, interval and chosen window")
    plan.set_defaults(handler=run_plan)

    backtest = commands.add_parser(
        "backtest",
        parents=[common],
        help="savings of run_now, threshold, plan_once, ours (the shipped policy) and oracle on traces",
    )
    backtest.add_argument("--zone", action="append", default=[], help="embedded zone (repeatable)")
    backtest.add_argument("--trace", action="append", default=[], help="trace file (repeatable)")
    backtest.add_argument("--dataset", choices=embedded.DATASETS, help="embedded dataset for --zone")
    backtest.add_argument("--jobs", type=int, default=400, help="jobs per trace (default 400)")
    backtest.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    backtest.add_argument(
        "--forecast-mape",
        type=float,
        help="a synthetic provider forecast of this MAPE at 24 h, errors shared across issues (calibrated on "
        "real NESO issues)",
    )
    backtest.add_argument(
        "--forecast-issues",
        help="real recorded provider issues (CSV or Parquet: issued_at,target_start,forecast) for the --trace",
    )
    backtest.add_argument(
        "--use-trace-forecast",
        action="store_true",
        help="use the trace's forecast column as the provider forecast (NESO's is nearly the actual)",
    )
    add_output_options(backtest, "mean savings per policy (whole and interruptible jobs)")
    backtest.set_defaults(handler=run_backtest_command)


def _planning_forecast(
    args: argparse.Namespace, now: pd.Timestamp, deadline: pd.Timestamp
) -> IntensitySignal:
    """The product's forecast as of `now` (what the operators plan on), from the trace's past only."""
    if args.trace:
        provider = TraceProvider(signals={args.zone: read_trace(args.trace, zone=args.zone)})
    else:
        provider = TraceProvider()
    start = now.floor("h")
    hours = max(1, int((deadline - start) / pd.Timedelta(hours=1)) + 1)
    return assemble_forecast(
        provider, args.zone, start, pd.Timedelta(hours=hours), history=pd.Timedelta(days=args.history_days)
    )


def run_plan(args: argparse.Namespace) -> int:
    deadline = parse_utc(args.deadline, "--deadline")
    duration = parse_duration(args.duration, "--duration")
    now = parse_utc(args.now, "--now") if args.now else deadline - pd.Timedelta(hours=24)
    forecast = _planning_forecast(args, now, deadline)
    plan: Plan
    if args.interruptible:
        plan = plan_slots(
            forecast,
            duration=duration,
            deadline=deadline,
            earliest_start=now,
            min_chunk=parse_duration(args.min_chunk, "--min-chunk"),
        )
    else:
        plan = plan_window(forecast, duration=duration, deadline=deadline, earliest_start=now)
    if args.json:
        print_json(plan.to_dict())
    elif args.plot:
        title = f"{plan.zone}: plan"
        print(f"wrote {plot_signal(forecast, args.plot, title=title, windows=plan.slots, now=now)}")
    else:
        print_table(
            [plan.to_dict()],
            ["zone", "start", "end", "expected_intensity", "run_now_intensity", "savings_pct"],
        )
        print(f"# {plan.reason}")
        print(f"# forecast: {plan.forecast_source} ({plan.kind}); slots: {len(plan.slots)}")
    return 0


def run_backtest_command(args: argparse.Namespace) -> int:
    if args.seed < 0:  # numpy's generators refuse it, but only after the traces are read and in its words
        raise InvalidInputError(
            f"--seed {args.seed} is negative; give a whole number 0 or more, e.g. --seed 0"
        )
    traces = [Trace(z, embedded.load(z, dataset=args.dataset)) for z in args.zone]
    if args.use_trace_forecast:
        traces = [
            Trace(t.name, t.actual, embedded.load(t.name, dataset=args.dataset, column="forecast"))
            for t in traces
        ]
    issues = None
    if args.forecast_issues:
        if args.zone or len(args.trace) != 1:
            raise InvalidInputError(
                "--forecast-issues goes with exactly one --trace (the actuals those issues forecast), "
                f"got --trace {args.trace} and --zone {args.zone}"
            )
        issues = read_forecast_issues(args.forecast_issues)
    for path in args.trace:
        name = Path(path).name
        forecast = read_trace(path, zone=name, column="forecast") if args.use_trace_forecast else None
        traces.append(Trace(name, read_trace(path, zone=name), forecast, issues))
    config = BacktestConfig(
        jobs=args.jobs,
        seed=args.seed,
        forecast_mape=args.forecast_mape,
        trace_forecasts=args.use_trace_forecast,
        forecast_issues=Path(args.forecast_issues).name if args.forecast_issues else None,
    )
    report = run_backtest(traces, config, progress=True)
    if args.json:
        print_json(report)
        return 0
    if args.plot:
        print(f"wrote {write_plot(args.plot, charts.savings_chart(report))}")
        return 0
    rows = []
    for policy, kinds in report["mean"].items():
        row: dict[str, Any] = {"policy": f"{policy} (shipped)" if policy == SHIPPED else policy}
        for kind, short in (("contiguous", "whole"), ("interruptible", "interr")):
            row[f"{short}_oracle_fraction"] = f"{kinds[kind]['oracle_fraction']:.3f}"
            row[f"{short}_savings_pct"] = f"{kinds[kind]['savings_pct']:.2f}"
        rows.append(row)
    print(f"# mean over {len(traces)} trace(s); forecast: {report['config']['forecast']}")
    print_table(rows, list(rows[0]))
    print(f"# {report['wall_time_s']} s; --json for per-trace figures and forecast error by horizon")
    return 0
