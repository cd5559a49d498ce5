"""The Prefect training flow runs a Hugging Face Trainer job (flows/hf_finetune.py: a tiny BERT built from
a config) as a deployment, with the real ThresholdStrategy on replayed real DE data: paused by checkpoint and
rescheduled in the dirty night, resumed from the packed Trainer checkpoint in a fresh Trainer in the clean
morning, ending with the same parameters, bitwise, as an uninterrupted run."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pandas as pd
import pytest
import torch
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.flow_engine import run_flow
from prefect_helpers import deploy
from safetensors.torch import load as load_safetensors

from carbon_flows.training import carbon_aware_training
from carbon_sensors.integrations.transformers import HF_STATE
from carbon_sensors.replay import Replay
from carbon_sensors.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
JOB = f"{REPO / 'flows' / 'hf_finetune.py'}:tiny_hf_job"
DEADLINE = "2023-06-03T06:00Z"  # far enough that the deadline guard never bounds the night's hold
NIGHT = pd.Timestamp(
    "2023-06-02T01:00Z"
)  # DE above 250 gCO2eq/kWh until 07:00, below 200 from 08:00 to 15:00
THRESHOLD = {"strategy": "threshold", "pause_above": 250.0, "resume_below": 200.0, "max_pause": "8h"}


def weights(checkpoint: str) -> dict[str, torch.Tensor]:
    """The model weights inside a published checkpoint: the Trainer's safetensors file, packed."""
    _, state = load_checkpoint(checkpoint)
    packed = state["user"][HF_STATE]["files"]["model.safetensors"]
    found: dict[str, torch.Tensor] = load_safetensors(packed.numpy().tobytes())
    return found


def test_hf_trainer_job_reschedules_in_a_deployment_and_resumes_bitwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment_id = deploy(carbon_aware_training, "carbon-hf-test", {"job": JOB})
    params = {
        "job": JOB, "zone": "DE", "checkpoint_dir": str(tmp_path / "paused"), "deadline": DEADLINE,
        "strategy_options": {"recheck": "8h"}, "max_in_process_pause": "1s", "decision_refresh_seconds": 0.0,
        "resume_overhead": "1s", "artifact_prefix": "hf", **THRESHOLD,
    }  # fmt: skip
    with get_client(sync_client=True) as client:
        first = client.create_flow_run_from_deployment(deployment_id, parameters=params)
        for name, value in Replay(NIGHT, pd.Timestamp(datetime.now(UTC)), 600.0).to_env().items():
            monkeypatch.setenv(name, value)  # the dirty night lasts 36 wall seconds at 600x
        state = run_flow(carbon_aware_training, flow_run=first, parameters=params, return_type="state")
        assert isinstance(state, State) and state.is_completed() and state.name == "Rescheduled", state
        (second,) = [
            r for r in client.read_flow_runs() if r.deployment_id == deployment_id and r.id != first.id
        ]
        resume = second.parameters
        _, paused = load_checkpoint(resume["resume_from"])
        steps_paused = paused["carbon"]["progress"]["steps_done"]
        assert 0 < steps_paused < 16  # mid-epoch 0: the Trainer skips the batches seen on resume
        assert paused["user"][HF_STATE]["name"] == f"checkpoint-{steps_paused}"
        clock = Replay.from_env()
        assert clock is not None and second.expected_start_time is not None
        wake = clock.trace_time(pd.Timestamp(second.expected_start_time))
        assert pd.Timestamp("2023-06-02T07:00Z") < wake < pd.Timestamp("2023-06-02T15:00Z")
        # the scheduled run starts at its grid moment (instead of waiting the wall seconds), at a minute a
        # second from there: the morning stays clean however slowly a loaded machine trains
        now = pd.Timestamp(datetime.now(UTC))
        for name, value in Replay(wake, now, 60.0).to_env().items():
            monkeypatch.setenv(name, value)
        final = run_flow(carbon_aware_training, flow_run=second, parameters=resume, return_type="state")
    assert isinstance(final, State) and final.is_completed() and final.name == "Completed", final
    resumed: dict[str, Any] = final.result()  # type: ignore[assignment]
    assert resumed["status"] == "completed" and resumed["steps_done"] == 48
    assert resumed["started_at_step"] == steps_paused and resumed["epoch"] == 3
    assert resumed["report"]["pauses"] == 1 and resumed["report"]["energy_kwh"] > 0
    assert 7 * 3600 < resumed["report"]["paused_seconds"] < 10 * 3600  # grid seconds: the dirty night

    straight: dict[str, Any] = carbon_aware_training(  # type: ignore[assignment]
        job=JOB, zone="DE", checkpoint_dir=str(tmp_path / "straight"), strategy="none", deadline=DEADLINE,
        artifact_prefix="hf-straight",
    )  # fmt: skip
    assert straight["status"] == "completed" and straight["report"]["pauses"] == 0
    want, got = weights(straight["checkpoint_path"]), weights(resumed["checkpoint_path"])
    assert want.keys() == got.keys() and len(want) > 10  # the tiny BERT's embeddings, layer, pooler, head
    for key, tensor in want.items():
        assert torch.equal(tensor, got[key]), key
