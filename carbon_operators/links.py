"""`CarbonIntensityLink`: a task's "Carbon intensity" button, opening the plugin page for the task's zone and
run (its chart shows what the run's carbon-aware tasks planned and waited for; see `carbon_operators.views`).

Airflow 3 evaluates links on the worker when the task finishes and stores the URL in XCom, so the serialised
DAG keeps only the link's name and XCom key; the link itself holds no state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from airflow.sdk import BaseOperatorLink

from carbon_operators.target import zones_of
from carbon_sensors.errors import InvalidInputError

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

PAGE_PATH = "/carbon/"
RUN_PAGE = "run"


def page_url(zone: str | None) -> str:
    """The plugin page's relative URL for `zone` (the page's own default zone when None)."""
    return PAGE_PATH if not zone else f"{PAGE_PATH}?{urlencode({'zone': zone})}"


def run_page_url(zone: str, ti_key: TaskInstanceKey) -> str:
    """The plugin's page of one task's run in `zone`."""
    query = {"zone": zone, "dag_id": ti_key.dag_id, "run_id": ti_key.run_id, "task_id": ti_key.task_id}
    return f"{PAGE_PATH}{RUN_PAGE}?{urlencode(query)}"


class CarbonIntensityLink(BaseOperatorLink):
    """Link from a carbon-aware task to the intensity page of its (first) zone, for the task's run."""

    name = "Carbon intensity"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        try:
            zone: str | None = zones_of(getattr(operator, "zone", None), None)[0]
        except InvalidInputError:  # no zone on the task: the connection's default, unknown here
            zone = None
        return page_url(zone) if zone is None else run_page_url(zone, ti_key)
