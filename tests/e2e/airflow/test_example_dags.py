"""The example DAGs end to end through `dag.test()` (real tasks, real deferrals run in line, SQLite).

Replay makes the embedded real Electricity Maps 2023 data "now": DE on 2023-10-20 is dirty (> 250) until
12:00, clean until 16:00 (the sensor releases, training runs), dirty (> 300) until 22:00 (training pauses and
defers), then clean (training resumes from its checkpoint and finishes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from airflow_e2e_support import load_dag, replay_env, xcoms

from carbon_sensors import embedded
from carbon_sensors.emissions import EmissionsLedger, IntensityLookup
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.units import energy_text, mass_text

pytestmark = pytest.mark.slow


def use_env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def test_nightly_retraining_holds_trains_pauses_resumes_and_reports(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    use_env(
        monkeypatch,
        {
            "CARBON_AWARE_POLL_SECONDS": "0.5",
            "CARBON_AWARE_EPOCHS": "30",
            "CARBON_AWARE_RESUME_OVERHEAD": "1s",  # dags test runs deferrals in line
            "CARBON_AWARE_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        },
    )
    dag = load_dag("carbon_nightly_retraining.py")
    # Replay starts after the imports: the run begins near grid 02:00 and the sensor's 12 h allowance
    # reaches 14:00, past the 12:00 green.
    use_env(monkeypatch, replay_env("2023-10-20T12:00Z", speed=3600, starts_in_seconds=10))
    run = dag.test()
    assert run.state == "success"
    values = xcoms(dag.dag_id, run.run_id)

    wait = values["wait_for_green_grid"]
    assert wait["status"] == "green"
    assert wait["replay"] is True
    assert wait["threshold"] == 250.0
    released = pd.Timestamp(wait["reading"]["period_start"])
    assert released >= pd.Timestamp("2023-10-20T11:00Z")  # held through the dirty morning
    assert wait["reading"]["value"] == pytest.approx(embedded.load("DE").value_at(released))
    assert wait["reading"]["value"] <= 250.0

    train = values["retrain"]
    assert train["status"] == "completed"
    assert (
        train["steps_done"] == 30 * 57
    )  # 1,797 digits in batches of 32, 30 epochs: nothing lost or repeated
    assert train["epoch"] == 30
    assert train["deferrals"] >= 1
    assert Path(train["checkpoint_path"]).is_file()
    # the run's own folder: <checkpoint_dir>/<dag_id>/<run_id>/<task_id>/
    assert Path(train["checkpoint_path"]).parents[3] == tmp_path / "checkpoints"
    report = train["report"]
    assert report["zone"] == "DE"
    assert report["kind"] == "average"
    assert report["unit"] == "gCO2eq/kWh"
    assert report["pue"] == 1.0
    assert report["pauses"] >= 1
    assert report["paused_seconds"] >= 3600  # at least an hour of grid time waited out
    assert report["energy_kwh"] > 0
    assert report["energy_kwh_with_pue"] == pytest.approx(report["energy_kwh"])
    assert report["emissions_g"] > 0
    assert 150 < report["avg_intensity"] <= 300  # trained only while the grid was at most pause_above
    assert report["emissions_g"] == pytest.approx(report["energy_kwh"] * report["avg_intensity"], rel=1e-6)
    assert report["avoided_g"] == pytest.approx(
        report["run_now_emissions_g"] - report["emissions_g"], abs=1e-9
    )
    assert report["intensity_sources"] == ["electricitymaps-2023:lifecycle"]
    assert report["power_sources"]
    assert pd.Timestamp(report["finished_at"]) >= pd.Timestamp("2023-10-20T22:00Z")  # resumed after the pause

    summary = values["report"]
    check_report_text(load_dag("carbon_nightly_retraining.py"), train, capsys)
    assert summary == {
        "emissions_g": report["emissions_g"],
        "avoided_g": report["avoided_g"],
        "pauses": report["pauses"],
        "deferrals": train["deferrals"],
    }


def check_report_text(dag: Any, training: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    """The DAG's report task prints units people read and hands on the XCom's numbers at full precision."""
    capsys.readouterr()
    summary = dag.get_task("report").python_callable(training)
    printed = capsys.readouterr().out
    r = training["report"]
    assert summary["emissions_g"] == r["emissions_g"] and summary["avoided_g"] == r["avoided_g"]
    lines = {line.split()[0]: line for line in printed.splitlines()[1:]}
    assert lines["energy"].split(None, 1)[1] == (
        f"{energy_text(r['energy_kwh'])} ({energy_text(r['energy_kwh_with_pue'])} with PUE {r['pue']:g})"
    )
    assert lines["emissions"].split(None, 1)[1] == (
        f"{mass_text(r['emissions_g'])} at {r['avg_intensity']:.1f} gCO2eq/kWh on average"
    )
    assert f"avoided {mass_text(r['avoided_g'])}" in lines["run-now"]
    for number in (r["energy_kwh"], r["emissions_g"], r["avoided_g"], r["run_now_emissions_g"]):
        assert repr(number) not in printed and f"{number:.6f}" not in printed  # no raw floats
    return printed


def test_nightly_report_task_prints_wh_and_grams_to_three_digits(capsys: pytest.CaptureFixture[str]) -> None:
    """A report of Wh and grams (the XCom shape, from recorded DE intensities) as the report task shows it."""
    start = pd.Timestamp("2023-06-01T00:00Z")
    lookup = IntensityLookup(TraceProvider(), "DE", refetch_seconds=0)
    ledger = EmissionsLedger(zone="DE", submitted_at=start, pue=1.1, lookup=lookup)
    ledger.add_energy(start, start + pd.Timedelta(hours=1), {"cpu": 5400.0}, {"cpu": "rapl"})  # 1.5 Wh
    ledger.begin_pause(start + pd.Timedelta(hours=1), start + pd.Timedelta(hours=3), "grid is dirty")
    ledger.end_pause(start + pd.Timedelta(hours=3, minutes=30))
    ledger.add_energy(
        start + pd.Timedelta(hours=4), start + pd.Timedelta(hours=5), {"cpu": 5400.0}, {"cpu": "rapl"}
    )
    report = json.loads(json.dumps(ledger.report().to_dict()))  # as XCom carries it
    training = {
        "report": report,
        "steps_done": 1710,
        "epoch": 30,
        "deferrals": 1,
        "checkpoint_path": "ckpt.pt",
    }
    printed = check_report_text(load_dag("carbon_nightly_retraining.py"), training, capsys)
    assert report["energy_kwh"] == pytest.approx(0.003)
    assert "  energy          3.00 Wh (3.30 Wh with PUE 1.1)\n" in printed
    assert "  paused          1 time(s), 2.50 h of grid time\n" in printed
    grams = report["emissions_g"]
    assert 0.1 < grams < 10 and f"emissions       {grams:.3g} gCO2eq at " in printed


def test_batch_etl_runs_its_heavy_stage_in_the_planned_window(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_env(
        monkeypatch,
        {"CARBON_AWARE_ETL_OUTPUT": str(tmp_path / "etl"), "CARBON_AWARE_RESUME_OVERHEAD": "1s"},
    )
    dag = load_dag("carbon_batch_etl.py")
    use_env(monkeypatch, replay_env("2023-10-20T04:00Z", speed=3600, starts_in_seconds=0))
    run = dag.test()
    assert run.state == "success"
    values = xcoms(dag.dag_id, run.run_id)

    plan: dict[str, Any] = values["fit_forecaster_carbon_window"]
    assert plan["status"] == "released"
    assert plan["zone"] in ("DE", "GB")
    start, end = pd.Timestamp(plan["start"]), pd.Timestamp(plan["end"])
    assert end - start == pd.Timedelta(hours=2)  # the heavy task's execution_timeout
    assert end <= pd.Timestamp(plan["deadline"])
    assert pd.Timestamp(plan["released_at"]) >= start  # it waited for the window
    assert plan["expected_intensity"] <= plan["run_now_intensity"]
    assert plan["savings_pct"] >= 0
    assert plan["replay"] is True

    heavy = values["fit_forecaster"]
    assert heavy["window"] == plan
    assert set(heavy["mae_g_per_kwh"]) == {"DE", "GB"}
    assert all(0 < mae < 200 for mae in heavy["mae_g_per_kwh"].values())
    written = json.loads(Path(values["load"]).read_text())
    assert written["mae_g_per_kwh"] == heavy["mae_g_per_kwh"]
