"""Carbon-aware PyTorch training: a runner that measures energy, asks a strategy, and pauses by checkpoint.

The only part of carbon_sensors that imports torch.
"""

from carbon_sensors.training.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from carbon_sensors.training.job import TrainingJob, TrainingResult
from carbon_sensors.training.runner import TrainingRunner

__all__ = [
    "TrainingJob",
    "TrainingResult",
    "TrainingRunner",
    "find_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]
