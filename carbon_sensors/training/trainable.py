"""What the Airflow operator and the Prefect flow can train: any job that trains inside a `CarbonSession`.

`TrainingJob` (our runner), `LightningJob` and `HFTrainerJob` (the framework callbacks) all are; a face
builds the session from its parameters and hands it over, so each loop gets the same guard, energy
windows, timeline and checkpoint store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from carbon_sensors.training.job import TrainingJob, TrainingResult
from carbon_sensors.training.runner import TrainingRunner
from carbon_sensors.training.session import CarbonSession


@runtime_checkable
class Trainable(Protocol):
    """A training job a face can run: it knows its length and trains one attempt in a given session."""

    def total_steps(self) -> int | None:
        """Steps the whole job takes, when known (the deadline guard needs the work left)."""
        ...

    def train(self, session: CarbonSession, resume_from: str | Path | None) -> TrainingResult:
        """Resume (a checkpoint path, "latest", or None: afresh) and train until done, paused or stopped."""
        ...


def train_job(job: TrainingJob, session: CarbonSession, resume_from: str | Path | None) -> TrainingResult:
    """`TrainingJob.train`: the runner, in the face's session."""
    return TrainingRunner(job, session=session).run(resume_from)
