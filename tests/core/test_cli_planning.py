"""`carbon-aware plan` on the embedded real data: table, JSON and plot."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from carbon_sensors.cli import main
from carbon_sensors.forecast.combine import assemble_forecast, horizon_to
from carbon_sensors.planner import plan_window
from carbon_sensors.providers.trace import TraceProvider


def test_plan_json_finishes_by_the_deadline(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["plan", "--zone", "DE", "--duration", "3h", "--deadline", "2023-06-02T06:00Z", "--json"]
    assert main(args) == 0
    plan = json.loads(capsys.readouterr().out)
    assert pd.Timestamp(plan["end"]) <= pd.Timestamp("2023-06-02T06:00Z") and not plan["fallback"]
    assert plan["forecast_source"].startswith("calendar-lag-ridge")  # assemble_forecast: no foresight
    assert main([*args, "--interruptible", "--min-chunk", "2h"]) == 0
    slots = json.loads(capsys.readouterr().out)["slots"]
    assert all(pd.Timestamp(b) - pd.Timestamp(a) >= pd.Timedelta(hours=2) for a, b in slots)


def test_plan_is_the_operators_plan(capsys: pytest.CaptureFixture[str]) -> None:
    """Reproduced: the CLI fitted our model on 56 days where the operators fit it on 120, so `plan` showed
    another window than the one a CarbonWindowOperator would hold for."""
    now, deadline = pd.Timestamp("2023-06-01T06:00Z"), pd.Timestamp("2023-06-02T06:00Z")
    args = ["plan", "--zone", "DE", "--duration", "3h", "--deadline", deadline.isoformat(), "--json"]
    assert main([*args, "--now", now.isoformat()]) == 0
    shown = json.loads(capsys.readouterr().out)
    forecast = assemble_forecast(TraceProvider(), "DE", now, horizon_to(deadline, now))  # the window's
    expected = plan_window(forecast, duration=pd.Timedelta(hours=3), deadline=deadline, earliest_start=now)
    assert (shown["start"], shown["expected_intensity"]) == (
        expected.to_dict()["start"],
        expected.to_dict()["expected_intensity"],
    )


def test_plan_plot_and_bad_deadline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "plan.png"
    assert (
        main(
            [
                "plan",
                "--zone",
                "DE",
                "--duration",
                "3h",
                "--deadline",
                "2023-06-02T06:00Z",
                "--plot",
                str(png),
            ]
        )
        == 0
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code = main(["plan", "--zone", "DE", "--duration", "30h", "--deadline", "2023-06-02T06:00Z"])
    assert code == 2 and "duration" in capsys.readouterr().err


def test_backtest_refuses_a_negative_seed_and_no_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", "--zone", "DE", "--jobs", "3", "--seed", "-1"]) == 2
    assert "--seed -1 is negative; give a whole number 0 or more" in capsys.readouterr().err
    assert main(["backtest", "--zone", "DE", "--jobs", "0"]) == 2
    assert "jobs=0 must be a positive number" in capsys.readouterr().err
