"""Helper process for test_training_crash: forks training children that the test then kills.

Importing torch costs seconds on a loaded machine, so this process imports it once and forks one child per
command read from stdin: `run CHECKPOINT_DIR EVERY_STEPS MEASURE_SECONDS EPOCHS`. It prints "pid N" for each
child and "exit N CODE" once the child has ended (CODE is minus the signal number for a killed child). The
child trains with `resume_from="latest"` and prints "at N" (N steps done) as each step starts, "save" as a
checkpoint write starts (writes are slowed to tens of ms so that kills land inside them), the runner's log
lines (which say where it resumed) and "done STATUS STEPS". The parent never runs a torch op, so the
children start with no thread pools to inherit.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch._dynamo  # an optimizer's first use imports it: seconds, paid once here, not per child
from torch import nn
from training_models import build_job

from carbon_sensors.power import EstimateMeter, PowerMonitor
from carbon_sensors.training import TrainingRunner

real_save = torch.save


def say(line: str) -> None:
    """One write per line, so that a kill never leaves half a line for the next process's output."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def slow_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
    """torch.save into memory, then written in chunks with pauses: a slow disk, where kills land mid-write."""
    say("save")
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    chunk = max(1, len(data) // 8)
    for i in range(0, len(data), chunk):
        f.write(data[i : i + chunk])
        time.sleep(0.004)


def train(checkpoint_dir: Path, every: int, measure: float, epochs: int) -> None:
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s", force=True)
    torch.set_num_threads(1)
    torch.save = slow_save
    job = build_job(1, epochs=epochs)
    runner = TrainingRunner(
        job, checkpoint_dir=checkpoint_dir, checkpoint_every_steps=every, checkpoint_every=None,
        measure_every_seconds=measure, monitor=PowerMonitor([EstimateMeter()], start=False),
    )  # fmt: skip

    def slow_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        say(f"at {runner.steps_done}")
        time.sleep(0.002)
        return nn.functional.mse_loss(output, target)

    job.loss_fn = slow_loss
    result = runner.run(resume_from="latest")
    say(f"done {result.status} {result.steps_done}")


def main() -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        _, folder, every, measure, epochs = line.split()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                train(Path(folder), int(every), float(measure), int(epochs))
            except BaseException as exc:  # report, never fall back into the parent's loop
                say(f"error {type(exc).__name__}: {exc}")
                code = 1
            finally:
                sys.stdout.flush()
                os._exit(code)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {pid} {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()
