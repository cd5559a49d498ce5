"""The backtest on real recorded data: invariants of the policies, no look-ahead, the noise model, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from carbon_sensors import embedded
from carbon_sensors.backtest import (
    HORIZON_H,
    KINDS,
    POLICIES,
    WARMUP_H,
    BacktestConfig,
    Jobs,
    Trace,
    backtest_trace,
    build_forecasts,
    hourly,
    rolling_model,
    run_backtest,
    simulate,
    synthetic_provider,
)
from carbon_sensors.cli import main
from carbon_sensors.errors import InvalidInputError, NoDataError
from carbon_sensors.signal import make_signal


@pytest.fixture(scope="module")
def de() -> Trace:
    return Trace("DE", embedded.load("DE"))


def test_oracle_is_never_beaten_and_every_job_meets_its_deadline(de: Trace) -> None:
    actual = hourly(de.actual)
    rng = np.random.default_rng(3)
    jobs = Jobs.draw(len(actual.values), 120, rng)
    assert (jobs.submit >= WARMUP_H).all() and (
        jobs.submit + jobs.duration + jobs.slack <= len(actual.values)
    ).all()
    forecasts = build_forecasts(actual, BacktestConfig(), rng)
    emissions = simulate(actual.values, jobs, forecasts)
    for kind in KINDS:
        for policy in POLICIES:
            assert (emissions["oracle"][kind] <= emissions[policy][kind] + 1e-9).all(), (policy, kind)
    # interruptible oracle is at least as good as contiguous oracle
    assert (emissions["oracle"]["interruptible"] <= emissions["oracle"]["contiguous"] + 1e-9).all()


def test_model_forecasts_never_see_the_future(de: Trace) -> None:
    actual = hourly(de.actual)
    cut = WARMUP_H + 24 * 40 + 7
    tampered = actual.values.copy()
    tampered[cut:] = 1e4
    before = rolling_model(actual)
    after = rolling_model(type(actual)(actual.start, tampered, actual.zone, actual.kind, actual.source, 0))
    assert np.allclose(before[: cut + 1], after[: cut + 1], equal_nan=True)
    assert not np.allclose(before[cut + 1 : cut + 48], after[cut + 1 : cut + 48])


def test_synthetic_provider_has_the_asked_error_at_24h() -> None:
    values = np.full(20000, 300.0)
    forecast = synthetic_provider(values, 0.10, np.random.default_rng(0))
    errors = np.abs(forecast[:-HORIZON_H] / 300.0 - 1)
    assert errors[:, 23].mean() == pytest.approx(0.10, rel=0.05)
    assert errors[:, 0].mean() < errors[:, 5].mean() < errors[:, 23].mean()
    again = synthetic_provider(values, 0.10, np.random.default_rng(0))
    assert np.array_equal(forecast, again, equal_nan=True)


def test_report_shape_and_scores(de: Trace) -> None:
    report = run_backtest([de], BacktestConfig(jobs=80, seed=1))
    mean = report["mean"]
    assert set(mean) == set(POLICIES)
    for kind in KINDS:
        assert (
            mean["oracle"][kind]["oracle_fraction"] == 1.0 and mean["run_now"][kind]["oracle_fraction"] == 0.0
        )
        assert mean["oracle"][kind]["savings_pct"] >= mean["ours"][kind]["savings_pct"]
    errors = report["traces"]["DE"]["forecast_error"]
    assert errors["model"]["1-6h"]["mae"] < errors["seasonal_naive"]["1-6h"]["mae"]
    assert report["config"]["forecast_mape"] is None and "history only" in report["config"]["forecast"]
    json.dumps(report, allow_nan=False)


def test_provider_forecast_flag_is_reported(de: Trace) -> None:
    result = backtest_trace(de, BacktestConfig(jobs=40, forecast_mape=0.1))
    assert {"provider", "ours_blend"} <= set(result["forecast_error"])
    assert "synthetic provider" in BacktestConfig(forecast_mape=0.1).describe()["forecast"]


def test_bad_config_and_short_traces_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="jobs=0"):
        BacktestConfig(jobs=0)
    with pytest.raises(InvalidInputError, match="forecast_mape=2"):
        BacktestConfig(forecast_mape=2)
    with pytest.raises(InvalidInputError, match="at least one trace"):
        run_backtest([], BacktestConfig())
    short = embedded.load("DE").values.iloc[: 24 * 20]
    with pytest.raises(NoDataError, match="too short"):
        backtest_trace(Trace("short", make_signal(short, zone="DE", source="t")), BacktestConfig(jobs=5))
    no_forecast = Trace("DE", embedded.load("DE"))
    with pytest.raises(InvalidInputError, match="forecast column"):
        backtest_trace(no_forecast, BacktestConfig(jobs=5, trace_forecasts=True))


def test_cli_backtest_on_a_trace_file_with_its_forecast(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    neso = embedded.load("GB", dataset="neso-2023")
    forecast = embedded.load("GB", dataset="neso-2023", column="forecast")
    frame = pd.DataFrame(
        {
            "from": pd.DatetimeIndex(neso.values.index).strftime("%Y-%m-%dT%H:%MZ"),
            "forecast": forecast.values.to_numpy(),
            "actual": neso.values.to_numpy(),
        }
    )
    path = tmp_path / "neso.csv"
    frame.iloc[: 24 * 2 * 60].to_csv(path, index=False)
    assert main(["backtest", "--trace", str(path), "--jobs", "30", "--use-trace-forecast", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["uses_trace_forecast_column"] is True
    assert 24 * 60 <= report["traces"]["neso.csv"]["hours"] <= 24 * 61  # 30-min rows averaged to hours
