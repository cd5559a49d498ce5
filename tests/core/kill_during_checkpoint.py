"""Helper process for test_training_checkpoint: trains, and hangs halfway through writing its 2nd checkpoint.

Usage: python kill_during_checkpoint.py CHECKPOINT_DIR MARKER_FILE. The test SIGKILLs it once MARKER_FILE exists.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from training_models import FakeClock, build_job

from carbon_sensors.power import EstimateMeter, PowerMonitor
from carbon_sensors.training import TrainingRunner

real_save = torch.save


class HangingFile:
    """Passes the first write through, then announces itself and blocks: the process dies mid-write."""

    def __init__(self, fh: Any, marker: Path) -> None:
        self.fh, self.marker, self.writes = fh, marker, 0

    def write(self, data: bytes) -> int:
        if self.writes == 1:
            self.fh.flush()
            self.marker.write_text("writing")
            time.sleep(120)
        self.writes += 1
        return int(self.fh.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fh, name)


def main() -> None:
    checkpoint_dir, marker = Path(sys.argv[1]), Path(sys.argv[2])
    calls = 0

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        real_save(obj, HangingFile(f, marker) if calls == 2 else f, *args, **kwargs)

    torch.save = save
    job = build_job(1)
    runner = TrainingRunner(
        job, checkpoint_dir=checkpoint_dir, checkpoint_every_steps=4, clock=FakeClock(tick=timedelta(seconds=1)),
        monitor=PowerMonitor([EstimateMeter()], start=False),
    )  # fmt: skip
    runner.run()


if __name__ == "__main__":
    main()
