"""The training report's chart and artifact keys on the shared Prefect test server: each run's report carries a
chart drawn from that run's own emissions timeline, under keys of its own; progress continues across resumes.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import Artifact as ArtifactResponse

from carbon_flows.artifacts import LiveProgress
from carbon_flows.training import carbon_aware_training
from carbon_sensors import charts
from carbon_sensors.emissions import read_jsonl, report_lines
from carbon_sensors.replay import Replay

REPO = Path(__file__).resolve().parents[2]
JOB = f"{REPO / 'flows' / 'carbon_training.py'}:tiny_regression_job"
GREEN = pd.Timestamp("2023-06-02T11:00Z")  # DE ~155 gCO2eq/kWh
ROW = re.compile(r"^\| ([^|]+?) \| ([^|]*?) \| ([^|]*?) \|$", re.MULTILINE)
CHART = re.compile(r"!\[([^\]]*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def run_training(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, dict[str, ArtifactResponse]]:
    for key, value in Replay(GREEN, pd.Timestamp(datetime.now(UTC)), 60).to_env().items():
        monkeypatch.setenv(key, value)
    state = carbon_aware_training(
        job=JOB, zone="DE", checkpoint_dir=str(tmp_path / name), strategy="none", deadline="2023-06-02T23:00Z",
        artifact_prefix="charted", return_state=True,
    )  # fmt: skip
    assert state.is_completed()
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return state, {a.key: a for a in found if a.key is not None}


def own_chart(result: dict[str, Any]) -> bytes:
    """The chart drawn again from the run's own timeline: energy summed up to each "epoch k" interval; a
    completed run's intervals after its last epoch count to that epoch."""
    ledger = read_jsonl(result["timeline_path"])
    epochs, kwh = [], 0.0
    for interval in ledger.intervals:
        kwh += interval.kwh
        if interval.label and interval.label.startswith("epoch "):
            epochs.append((int(interval.label.split()[1]), kwh))
            kwh = 0.0
    if result["status"] == "completed":
        epochs[-1] = (epochs[-1][0], epochs[-1][1] + kwh)
    return charts.run_chart(ledger, epochs, title="DE: intensity while training, energy per epoch")


def check_units(markdown: str, report: dict[str, Any]) -> None:
    """The report artifact shows energy, emissions and times as the CLI report does: 3 significant digits in
    a unit of their size (a tiny job: Wh and grams); the flow's result keeps the full-precision floats."""
    shown = {label: (value, unit) for label, value, unit in ROW.findall(markdown)}
    texts = dict(report_lines(report))
    for label in ("Energy", "Energy with PUE", "Emissions", "Emissions if run immediately", "Avoided emissions",
                  "Average intensity", "Active time", "Paused time"):  # fmt: skip
        value, unit = shown[label]
        assert f"{value} {unit}" == texts[label], label
    assert shown["Energy"][1] == "Wh" and shown["Emissions"][1] == "gCO2eq"
    assert len(shown["Emissions"][0].replace(".", "").lstrip("0")) == 3  # 3 significant digits
    for key in ("energy_kwh", "emissions_g"):
        assert repr(report[key]) not in markdown and len(repr(report[key])) > 8  # the result: full precision


def test_each_run_reports_a_chart_of_its_own_data_under_its_own_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, first_found = run_training(tmp_path, "first", monkeypatch)
    second, second_found = run_training(tmp_path, "second", monkeypatch)

    charts_seen = []
    for state, found in ((first, first_found), (second, second_found)):
        training = state.state_details.flow_run_id.hex[:12]
        assert set(found) == {f"charted-{training}-{name}" for name in ("report", "epochs", "progress")}
        markdown = str(found[f"charted-{training}-report"].data)
        [(alt, encoded)] = CHART.findall(markdown)
        assert alt == "DE: intensity while training, energy per epoch"
        png = base64.b64decode(encoded)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert png == own_chart(state.result()), "the chart is not drawn from this run's timeline"
        check_units(markdown, state.result()["report"])
        charts_seen.append(png)
    assert charts_seen[0] != charts_seen[1]  # two runs, two timelines, two pictures
    assert not set(first_found) & set(second_found)


def test_progress_continues_where_the_same_key_ended() -> None:
    first = LiveProgress(key="resumed-training-progress", description="first run")
    first.update(40.0)
    resumed = LiveProgress(key="resumed-training-progress", description="resumed run")
    assert resumed.percent == 40.0
    latest = Artifact.get("resumed-training-progress")
    assert (
        isinstance(latest, ArtifactResponse)
        and latest.id == resumed.artifact_id
        and float(str(latest.data)) == 40.0
    )
    resumed.update(30.0)  # never backwards
    assert resumed.percent == 40.0
