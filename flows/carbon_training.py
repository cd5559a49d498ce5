"""Example: carbon-aware training of a small PyTorch model, deployed from `prefect.yaml`.

The flow waits for a low-carbon window to start, pauses (checkpoint) when the grid turns dirty and resumes
when it is clean; long pauses become a run of this deployment scheduled at the resume time. Artifacts: an
emissions report, a per-epoch table and live progress. `tiny_regression_job` is the job it trains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carbon_flows.training import carbon_aware_training

if TYPE_CHECKING:
    from carbon_sensors.training import TrainingJob


def tiny_regression_job(epochs: int = 3, seed: int = 0) -> TrainingJob:
    """A seeded linear regression on synthetic data: small enough for a laptop, deterministic on CPU.

    torch is imported here, where the job is built, not when a worker or `prefect deploy` loads this file.
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from carbon_sensors.training import TrainingJob

    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(256, 8, generator=generator)
    targets = inputs @ torch.randn(8, 1, generator=generator) + 0.1 * torch.randn(256, 1, generator=generator)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    loader = DataLoader(
        TensorDataset(inputs, targets),
        batch_size=16,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return TrainingJob(model, optimizer, loader, loss_fn=torch.nn.functional.mse_loss, epochs=epochs)


if __name__ == "__main__":
    carbon_aware_training(job=f"{__file__}:tiny_regression_job", strategy="none")
