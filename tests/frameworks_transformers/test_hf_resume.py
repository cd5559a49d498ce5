"""CarbonAwareTrainerCallback under a replayed real grid: two pauses, a fresh Trainer per resume, and the
same parameters, bitwise, as an uninterrupted train(); the energy adds up over the segments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hf_models import BATCHES, EPOCHS, job
from replayed_grid import START, STEP, GridClock, parameters, session, strategy, wake_time

from carbon_sensors.emissions import JOULES_PER_KWH, read_jsonl
from carbon_sensors.errors import CheckpointError, InvalidInputError
from carbon_sensors.integrations.transformers import HF_OUTPUT, HF_STATE, HFTrainerJob
from carbon_sensors.power import EstimateMeter
from carbon_sensors.training import TrainingResult
from carbon_sensors.training.checkpoint import LATEST, load_checkpoint, save_checkpoint

TOTAL = EPOCHS * BATCHES


def uninterrupted(folder: Path, **kw: bool | int) -> tuple[list[torch.Tensor], float]:
    clock = GridClock()
    fit = job(1, clock, **kw)  # type: ignore[arg-type]
    assert fit.total_steps() == TOTAL  # read from a Trainer: epochs x batches
    result = fit.train(session(folder, clock, None, TOTAL), None)
    assert (result.status, result.steps_done, result.epoch) == ("completed", TOTAL, EPOCHS)
    return trained(fit), result.report.energy_kwh


def trained(fit: HFTrainerJob) -> list[torch.Tensor]:
    """The parameters the last attempt's Trainer ended with."""
    assert fit.trainer is not None and fit.trainer.model is not None
    return parameters(fit.trainer.model)


def segment_kwh(steps: int) -> float:
    return EstimateMeter(include_cpu=False).ram_watts * steps * STEP.total_seconds() / JOULES_PER_KWH


def paused_run(
    folder: Path, *, noise: bool = False, resume: str = "path"
) -> tuple[list[torch.Tensor], list[TrainingResult]]:
    """Train through the trace's two dirty spells, each resume in a fresh model and Trainer."""
    pausing, clock = strategy(), GridClock()
    fit = job(1, clock, noise=noise)
    result = fit.train(session(folder, clock, pausing, TOTAL), None)
    results = [result]
    while result.status == "paused":
        assert result.paused_until is not None and result.checkpoint_path is not None
        json.dumps(result.to_dict())  # small and JSON-able at every stage
        clock.now = wake_time(pausing, result.paused_until)
        fit = job(999, clock, noise=noise)  # other initial weights: the checkpoint must rule
        start = result.checkpoint_path if resume == "path" else "latest"
        result = fit.train(session(folder, clock, pausing, TOTAL), start)
        results.append(result)
    return trained(fit), results


@pytest.mark.parametrize("resume", ["path", "latest"])
def test_two_pauses_resume_bitwise_in_fresh_trainers(tmp_path: Path, resume: str) -> None:
    expected, expected_kwh = uninterrupted(tmp_path / "ref")
    folder = tmp_path / "ckpt"
    got, results = paused_run(folder, resume=resume)

    ends = [(r.status, r.steps_done, r.epoch, r.started_at_step) for r in results]
    # the first pause at the epoch 0/1 boundary, the second mid-epoch 2
    assert ends == [("paused", 8, 1, 0), ("paused", 20, 2, 8), ("completed", 24, 3, 20)]
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)
    energies = [r.report.energy_kwh for r in results]
    segments = [energies[0], energies[1] - energies[0], energies[2] - energies[1]]
    assert segments == pytest.approx([segment_kwh(8), segment_kwh(12), segment_kwh(4)], rel=1e-9)
    report = results[-1].report
    assert report.energy_kwh == pytest.approx(expected_kwh, rel=1e-9) == pytest.approx(sum(segments))
    assert report.pauses == 2 and report.submitted_at == START and report.emissions_g > 0
    assert [e["epoch"] for e in results[-1].epochs] == [0, 1, 2]
    assert [e["steps"] for e in results[-1].epochs] == [BATCHES] * EPOCHS
    assert results[-1].last_loss is not None and results[-1].last_loss > 0
    assert read_jsonl(folder / "emissions.jsonl").report().to_dict() == report.to_dict()
    # one published file per checkpoint: the Trainer's folder packed inside it, no folder left behind
    assert (folder / LATEST).read_text().strip() == "checkpoint-0000000024.pt"
    assert sorted(p.name for p in folder.glob("checkpoint-*.pt")) == [
        "checkpoint-0000000020.pt", "checkpoint-0000000024.pt",
    ]  # fmt: skip
    _, state = load_checkpoint(folder)
    packed = state["user"][HF_STATE]
    assert packed["name"] == "checkpoint-24"
    assert {
        "model.safetensors",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
        "trainer_state.json",
    } <= set(packed["files"])
    assert not list((folder / HF_OUTPUT).glob("checkpoint-*"))


def test_uninterrupted_runs_differ_with_another_seed(tmp_path: Path) -> None:
    """Guards the bitwise test: the parameters depend on the RNG state (dropout, shuffle) the resume restores."""
    expected, _ = uninterrupted(tmp_path / "ref")
    other, _ = uninterrupted(tmp_path / "other", seed=8)
    assert not all(torch.equal(a, b) for a, b in zip(other, expected, strict=True))


def test_random_augmentation_in_getitem_is_not_exact_mid_epoch(tmp_path: Path) -> None:
    """What the module docstring says: the Trainer fetches the first resumed batch before restoring the RNG."""
    expected, _ = uninterrupted(tmp_path / "ref", noise=True)
    got, results = paused_run(tmp_path / "ckpt", noise=True)
    assert [r.status for r in results] == ["paused", "paused", "completed"]
    assert not all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def test_periodic_checkpoints_every_n_steps(tmp_path: Path) -> None:
    clock = GridClock()
    settings_session = session(tmp_path, clock, None, TOTAL)
    object.__setattr__(settings_session.settings, "checkpoint_every_steps", 10)
    published: list[str] = []
    object.__setattr__(
        settings_session.settings, "on_checkpoint", lambda path, _t: published.append(path.name)
    )
    result = job(1, clock).train(settings_session, None)
    assert result.status == "completed"
    assert published == ["checkpoint-0000000010.pt", "checkpoint-0000000020.pt", "checkpoint-0000000024.pt"]
    _, state = load_checkpoint(tmp_path / "checkpoint-0000000020.pt")
    assert (
        state["carbon"]["progress"]["steps_done"] == 20 and state["user"][HF_STATE]["name"] == "checkpoint-20"
    )


def test_max_steps_ends_mid_epoch_with_a_final_checkpoint(tmp_path: Path) -> None:
    clock = GridClock()
    fit = job(1, clock, max_steps=11)
    assert fit.total_steps() == 11
    result = fit.train(session(tmp_path, clock, None, 11), None)
    assert (result.status, result.steps_done, result.epoch) == ("completed", 11, 1)  # epoch 1 not complete
    assert result.checkpoint_path is not None and result.checkpoint_path.endswith("checkpoint-0000000011.pt")
    _, state = load_checkpoint(result.checkpoint_path)
    assert state["user"][HF_STATE]["name"] == "checkpoint-11"


def test_a_resume_still_held_pauses_again_before_any_step(tmp_path: Path) -> None:
    pausing, clock = strategy(), GridClock()
    first = job(1, clock).train(session(tmp_path, clock, pausing, TOTAL), None)
    assert (first.status, first.steps_done) == ("paused", 8)
    assert first.paused_until is not None
    clock.now = first.paused_until  # the first re-check: still dirty
    again = job(999, clock).train(session(tmp_path, clock, pausing, TOTAL), "latest")
    assert (again.status, again.steps_done, again.checkpoint_path) == ("paused", 8, first.checkpoint_path)


def test_a_checkpoint_without_a_trainer_folder_is_refused(tmp_path: Path) -> None:
    clock = GridClock()
    warm = session(tmp_path / "w", clock, None, TOTAL)
    warm.begin(None, fresh=True)
    carbon = warm.state_dict()
    warm.close()
    foreign = save_checkpoint(tmp_path / "c", {"format": 2, "carbon": carbon, "user": {"model": {}}}, step=0)
    with pytest.raises(CheckpointError, match="no Hugging Face Trainer checkpoint"):
        job(1, clock).train(session(tmp_path / "c", clock, None, TOTAL), foreign)


def test_a_trainer_without_the_callback_is_refused(tmp_path: Path) -> None:
    built = job(1, GridClock())
    forgetful = HFTrainerJob(lambda callbacks, out: built.make_trainer([], out), total_steps=TOTAL)
    with pytest.raises(InvalidInputError, match="callback is missing"):
        forgetful.train(session(tmp_path, GridClock(), None, TOTAL), None)


def test_importing_carbon_sensors_imports_no_transformers() -> None:
    code = (
        "import sys, carbon_sensors, carbon_sensors.training, carbon_sensors.integrations\n"
        "assert 'transformers' not in sys.modules and 'accelerate' not in sys.modules, 'imported'\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr[-2000:]


def test_without_transformers_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['transformers'] = None\n"
        "try:\n    import carbon_sensors.integrations.transformers\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "pip install 'carbon-aware-trainer[transformers]'" in run.stdout
