# Airflow's @task typing turns a call's result into XComArg, which mypy cannot match to the next task's
# parameter types; the values are resolved at run time.
# mypy: disable-error-code="arg-type"
"""Nightly retraining, carbon-aware: wait for a green grid, train (pausing through dirty hours), report.

1. `wait_for_green_grid` defers in the triggerer until the zone is below `max_intensity` gCO2eq/kWh.
2. `retrain` trains a small CNN on scikit-learn's handwritten digits; when the grid rises above
   `pause_above` it checkpoints and defers (no worker held), and resumes from the checkpoint once the grid
   is below `resume_below` again.
3. `report` prints the emissions report the training pushed to XCom.

Offline by default: the embedded real 2023 Electricity Maps trace, replayed as live when
CARBON_AWARE_REPLAY_START is set (as `make demo` does). Give a `carbon_intensity` connection for live data.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, task

from carbon_operators.sensors import CarbonIntensitySensor
from carbon_operators.training import CarbonAwareTrainingOperator
from carbon_sensors.units import duration_text, energy_text, intensity_text, mass_text

if TYPE_CHECKING:
    from carbon_sensors.training import TrainingJob

ZONE = os.environ.get("CARBON_AWARE_ZONE", "DE")
CONN_ID = os.environ.get("CARBON_AWARE_CONN_ID") or None  # None: embedded traces
# Seconds between polls and decisions; short only when replaying a day in a minute.
POLL_SECONDS = float(os.environ.get("CARBON_AWARE_POLL_SECONDS", "300"))
# Wall time a resumed task needs to start again (scheduler, worker pick-up, DAG parse), kept free before the
# deadline; `airflow dags test` runs deferrals in line, so the replay demo sets it to a second.
RESUME_OVERHEAD = os.environ.get("CARBON_AWARE_RESUME_OVERHEAD", "2min")
CHECKPOINTS = os.environ.get("CARBON_AWARE_CHECKPOINT_DIR") or None  # None: a per-run temp folder
EPOCHS = int(os.environ.get("CARBON_AWARE_EPOCHS", "20"))
# How long after the run's data interval end the sensor may hold before running anyway.
WAIT_HOURS = float(os.environ.get("CARBON_AWARE_WAIT_HOURS", "12"))


def build_digits_training(epochs: int = EPOCHS, seed: int = 7) -> TrainingJob:
    """A small CNN on the 1,797 8x8 handwritten digits bundled with scikit-learn (no download).

    torch and scikit-learn are imported here, in the task, not at the top of the file: the dag-processor
    imports this file on every parse, and these two cost seconds (Airflow's top-level code guidance).
    """
    import torch
    from sklearn.datasets import load_digits
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from carbon_sensors.training import TrainingJob

    torch.set_num_threads(1)  # a model this small trains fastest on one thread (no contention)
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(digits.target, dtype=torch.long)
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(
        TensorDataset(images, labels),
        batch_size=32,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    return TrainingJob(model, optimizer, loader, loss_fn=nn.functional.cross_entropy, epochs=epochs)


with DAG(
    dag_id="carbon_nightly_retraining",
    description="Wait for a green grid, retrain with carbon-aware pauses, report emissions",
    schedule="@daily",
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["carbon-aware", "training"],
    default_args={"retries": 0},
) as dag:
    wait = CarbonIntensitySensor(
        task_id="wait_for_green_grid",
        zone=ZONE,
        carbon_conn_id=CONN_ID,
        max_intensity=250.0,
        deferrable=True,
        poke_interval=POLL_SECONDS,
        deadline_allowance=timedelta(hours=WAIT_HOURS),
    )
    retrain = CarbonAwareTrainingOperator(
        task_id="retrain",
        training_callable=build_digits_training,
        zone=ZONE,
        carbon_conn_id=CONN_ID,
        strategy="threshold",
        # Re-checked hourly while paused: each check is a cheap wake of the deferred task, no training resumed.
        strategy_kwargs={
            "pause_above": 300.0,
            "resume_below": 250.0,
            "max_pause": timedelta(hours=18),
            "recheck": timedelta(hours=1),
        },
        checkpoint_dir=CHECKPOINTS,
        deadline_allowance=timedelta(days=3),
        decision_refresh_seconds=min(POLL_SECONDS, 30.0),
        resume_overhead=RESUME_OVERHEAD,
    )

    @task
    def report(training: dict[str, Any]) -> dict[str, Any]:
        """Print the emissions report in units people read (Wh/kWh, g/kgCO2eq, 3 significant digits) and hand
        on the headline numbers at full precision."""
        r = training["report"]
        intensity = "-" if r["avg_intensity"] is None else intensity_text(r["avg_intensity"])
        lines = [
            f"zone {r['zone']} ({r['kind']} intensity, {r['unit']})",
            f"energy          {energy_text(r['energy_kwh'])} "
            f"({energy_text(r['energy_kwh_with_pue'])} with PUE {r['pue']:g})",
            f"emissions       {mass_text(r['emissions_g'])} at {intensity} on average",
            f"run-now twin    {mass_text(r['run_now_emissions_g'])}; avoided {mass_text(r['avoided_g'])}",
            f"paused          {r['pauses']} time(s), {duration_text(r['paused_seconds'])} of grid time",
            f"training        {training['steps_done']} steps, {training['epoch']} epochs, "
            f"{training['deferrals']} deferral(s); checkpoint {training['checkpoint_path']}",
            f"data sources    intensity: {', '.join(r['intensity_sources'])}; power: {', '.join(r['power_sources'])}",
        ]
        print("CARBON REPORT\n  " + "\n  ".join(lines))
        return {
            "emissions_g": r["emissions_g"],
            "avoided_g": r["avoided_g"],
            "pauses": r["pauses"],
            "deferrals": training["deferrals"],
        }

    wait >> retrain
    report(retrain.output)
