"""Core log records (strategy decisions and fallbacks, runner resumes) in the Prefect run's logs as well.

Why: the core logs to the `carbon_sensors` logger, which Prefect does not collect, so those lines reached only
the worker's stdout and never the run page. One handler on that logger, installed when the collection is
imported, sends each record to the run logger of the flow or task run it happens in; outside a run it does
nothing (the record still propagates to the root logger as before).
"""

from __future__ import annotations

import logging

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

CORE_LOGGER = "carbon_sensors"


class RunLogForwarder(logging.Handler):
    """Re-log a core record on the current Prefect run logger (which sends it to the API and the console)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            run_log = get_run_logger()
        except MissingContextError:
            return  # not inside a run: nothing to attach the record to
        try:
            run_log.log(record.levelno, "%s: %s", record.name, record.getMessage())
        except Exception:  # a logging failure must never break the job that logged
            self.handleError(record)


def forward_core_logs_to_runs() -> None:
    """Install the forwarder once per process; core INFO records (resumes, decisions) pass, not only warnings."""
    core = logging.getLogger(CORE_LOGGER)
    if not any(isinstance(h, RunLogForwarder) for h in core.handlers):
        core.addHandler(RunLogForwarder(level=logging.INFO))
    if core.level == logging.NOTSET or core.level > logging.INFO:
        core.setLevel(logging.INFO)
