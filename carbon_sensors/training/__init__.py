"""Carbon-aware PyTorch training: a session any loop calls between steps, and a runner built on it.

`CarbonSession` (`carbon_session` for a hand-written loop) measures energy, asks a strategy and pauses by
checkpoint; `TrainingRunner` runs a `TrainingJob` through it. The only part of carbon_sensors that imports
torch.
"""

from carbon_sensors.training.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from carbon_sensors.training.distributed import TorchDistributedSync
from carbon_sensors.training.job import TrainingJob, TrainingResult
from carbon_sensors.training.runner import TrainingRunner
from carbon_sensors.training.session import CarbonSession, SessionSettings, carbon_session
from carbon_sensors.training.trainable import Trainable

__all__ = [
    "CarbonSession",
    "SessionSettings",
    "TorchDistributedSync",
    "Trainable",
    "TrainingJob",
    "TrainingResult",
    "TrainingRunner",
    "carbon_session",
    "find_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]
