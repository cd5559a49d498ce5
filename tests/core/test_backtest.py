"""The backtest on real recorded data: invariants of the policies, no look-ahead, the noise model, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from carbon_sensors import embedded
from carbon_sensors.backtest import (
    HISTORY_POLICIES,
    KINDS,
    PROVIDER_POLICIES,
    WARMUP_H,
    BacktestConfig,
    Jobs,
    Trace,
    _replanned_start,
    _woken_start,
    backtest_trace,
    best_start,
    build_forecasts,
    cheapest_hours,
    hourly,
    rolling_model,
    run_backtest,
    simulate,
)
from carbon_sensors.cli import main
from carbon_sensors.errors import InvalidInputError, NoDataError
from carbon_sensors.forecast.issues import newest_issue_matrix, read_forecast_issues
from carbon_sensors.forecast.noise import RHO_ISSUES, RHO_TARGETS, correlated_field, correlated_provider
from carbon_sensors.planner import plan_slots, plan_window
from carbon_sensors.signal import make_signal

ISSUES = Path(__file__).parents[1] / "fixtures" / "neso_fw48h_issues_sample.csv"


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
    emissions = simulate(actual.values, jobs, forecasts, HISTORY_POLICIES)
    for kind in KINDS:
        for policy in HISTORY_POLICIES:
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


def test_correlated_noise_has_the_asked_error_and_correlations() -> None:
    field = correlated_field(6000, 48, np.random.default_rng(0))
    assert field.std() == pytest.approx(1.0, abs=0.05)
    # along one issue's targets, and for one target between issues 3 h and 24 h apart
    assert np.corrcoef(field[:, 5], field[:, 6])[0, 1] == pytest.approx(RHO_TARGETS, abs=0.03)
    for gap in (3, 24):
        same_target = np.corrcoef(field[gap:, 30 - gap], field[:-gap, 30])[0, 1]
        assert same_target == pytest.approx(RHO_ISSUES**gap, abs=0.05)
    forecast = correlated_provider(np.full(6000, 300.0), 0.10, 48, np.random.default_rng(1))
    errors = np.abs(forecast[:-48] / 300.0 - 1)
    assert errors[:, 23].mean() == pytest.approx(0.10, rel=0.08)
    assert errors[:, 0].mean() < errors[:, 23].mean()
    again = correlated_provider(np.full(6000, 300.0), 0.10, 48, np.random.default_rng(1))
    assert np.array_equal(forecast, again, equal_nan=True)


def test_backtest_planning_is_the_planners_rule() -> None:
    rng = np.random.default_rng(5)
    start = pd.Timestamp("2023-03-01T00:00Z")
    for _ in range(20):
        d, s = int(rng.choice([1, 3, 6])), int(rng.choice([6, 12, 24]))
        row = np.round(rng.normal(200, 40, d + s), 1)
        signal = make_signal(
            pd.Series(row, index=pd.date_range(start, periods=d + s, freq="h")), zone="X", source="t"
        )
        deadline = start + pd.Timedelta(hours=d + s)
        window = plan_window(signal, duration=pd.Timedelta(hours=d), deadline=deadline, earliest_start=start)
        assert window.start == start + pd.Timedelta(hours=best_start(row, d, s))
        slots = plan_slots(
            signal,
            duration=pd.Timedelta(hours=d),
            deadline=deadline,
            earliest_start=start,
            min_chunk=pd.Timedelta(hours=1),
        )
        hours = sorted(
            int((a - start) / pd.Timedelta(hours=1)) + i
            for a, b in slots.slots
            for i in range(int((b - a) / pd.Timedelta(hours=1)))
        )
        assert row[hours].sum() == pytest.approx(row[cheapest_hours(row, d, s)].sum())


def test_issues_are_used_only_from_their_issue_time() -> None:
    issues = read_forecast_issues(ISSUES)
    first = issues["issued_at"].min()  # 03:31: usable from the 04:00 row on, never at 03:00
    start = first.floor("h") - pd.Timedelta(hours=2)
    matrix, age = newest_issue_matrix(issues, start, 12, 6)
    assert np.isnan(matrix[:3]).all() and np.isfinite(matrix[3]).all()
    assert age[3] == pytest.approx(29 / 60) and np.isnan(age[:3]).all()
    hour4 = issues[(issues["target_start"] >= start + pd.Timedelta(hours=3))].iloc[:2]["forecast"].mean()
    assert matrix[3, 0] == pytest.approx(hour4)


def test_report_shape_and_scores(de: Trace) -> None:
    report = run_backtest([de], BacktestConfig(jobs=80, seed=1))
    mean = report["mean"]
    assert set(mean) == set(HISTORY_POLICIES)
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
    assert {"provider", "blend", "blend_measured"} <= set(result["forecast_error"])
    assert set(result["policies"]) == set(PROVIDER_POLICIES)
    described = BacktestConfig(forecast_mape=0.1).describe()
    assert "synthetic provider" in described["forecast"] and described["real_or_synthetic"] == "synthetic"
    assert described["noise_model"]["rho_between_issues_per_hour"] == RHO_ISSUES
    assert "assemble_forecast" in described["policies"]["ours"]


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


def test_cli_backtest_on_real_recorded_issues(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    neso = embedded.load("GB", dataset="neso-2023").values
    actual = neso[: pd.Timestamp("2023-03-24T00:00Z")]
    path = tmp_path / "actuals.csv"
    pd.DataFrame(
        {"from": pd.DatetimeIndex(actual.index).strftime("%Y-%m-%dT%H:%MZ"), "actual": actual.to_numpy()}
    ).to_csv(path, index=False)
    args = ["backtest", "--forecast-issues", str(ISSUES), "--trace", str(path), "--jobs", "60", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    config = report["config"]
    assert config["forecast_issues"] == ISSUES.name and config["real_or_synthetic"] == "real"
    assert config["shipped_policy"] == "ours" and config["noise_model"] is None
    mean = report["mean"]
    assert set(mean) == set(PROVIDER_POLICIES)
    for kind in KINDS:
        assert mean["oracle"][kind]["oracle_fraction"] == 1.0
        assert mean["plan_once"][kind]["oracle_fraction"] <= 1.0
    first, last = report["traces"]["actuals.csv"]["submissions"]
    assert pd.Timestamp(first) >= pd.Timestamp("2023-03-14T04:00Z")
    assert pd.Timestamp(last) <= pd.Timestamp("2023-03-22T11:00Z")
    age = report["traces"]["actuals.csv"]["provider_issue_age_h"]
    assert 0 < age["median"] <= age["p90"] and 0 < age["share_within_3h"] < 1  # issues hours apart
    assert main(["backtest", "--forecast-issues", str(ISSUES), "--zone", "GB"]) == 2
    assert "exactly one --trace" in capsys.readouterr().err


def _matrix_from(issues: dict[int, list[float]], hours: int = 12) -> np.ndarray:
    """Row h: the newest issue by hour h (`issues` maps issue hour -> forecast by absolute hour), 12 h ahead."""
    out, current = np.empty((hours, 12)), issues[0]
    for h in range(hours):
        current = issues.get(h, current)
        out[h] = current[h : h + 12]
    return out


def test_whole_jobs_follow_the_window_operators_rule() -> None:
    """Planned at submission, woken at the window, held again only for a later window worth min_savings."""
    flat = [100.0, 100, 90] + [100.0] * 21
    assert _woken_start(_matrix_from({0: flat}), 0, 1, 8) == 2  # the plan holds
    better_later = {0: flat, 2: [100.0, 100, 90, 100, 100, 50] + [100.0] * 18}
    assert _woken_start(_matrix_from(better_later), 0, 1, 8) == 5  # re-planned at 2: 50 g at hour 5
    barely = {0: flat, 2: [100.0, 100, 90, 89.6] + [100.0] * 20}
    assert _woken_start(_matrix_from(barely), 0, 1, 8) == 2  # 0.4% less than at 2 is not worth another hold
    assert _replanned_start(_matrix_from(barely), 0, 1, 8) == 3  # the hourly re-plan chases it
