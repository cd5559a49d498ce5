"""Resume a paused Lightning fit in a fresh process: `python lightning_child.py FOLDER CHECKPOINT WAKE OUT`.

Writes the attempt's result and the final parameters to OUT (torch.save), for the parent test to compare.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import torch
from lightning_models import job, seed_everything
from replayed_grid import GridClock, parameters, session, strategy


def main(folder: str, checkpoint: str, wake: str, out: str) -> None:
    clock = GridClock(pd.Timestamp(wake))
    fit = job(999, clock)  # other initial weights and RNG state than the first process: the checkpoint rules
    seed_everything(777)
    done = fit.train(session(Path(folder), clock, strategy()), checkpoint)
    torch.save({"result": done.to_dict(), "parameters": parameters(fit.model)}, out)


if __name__ == "__main__":
    main(*sys.argv[1:5])
