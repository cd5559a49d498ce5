"""The training job of the Prefect cluster e2e: a small classifier whose steps are slowed to 40 ms.

Imported by path (`job="<this file>:slow_classifier"`) by the flow runs the process workers start.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from carbon_sensors.training import TrainingJob

STEPS = 300


def slow_classifier(step_seconds: float = 0.04) -> TrainingJob:
    torch.set_num_threads(1)
    data = torch.Generator().manual_seed(11)
    x, labels = torch.randn(STEPS * 2, 6, generator=data), torch.randint(0, 3, (STEPS * 2,), generator=data)
    torch.manual_seed(13)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loader = DataLoader(
        TensorDataset(x, labels), batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(17)
    )

    def slow_cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        time.sleep(step_seconds)
        return nn.functional.cross_entropy(output, target)

    return TrainingJob(model, optimizer, loader, loss_fn=slow_cross_entropy)
