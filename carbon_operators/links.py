"""`CarbonIntensityLink`: a task's "Carbon intensity" button, opening the plugin page for the task's zone and
run (its chart shows what the run's carbon-aware tasks planned and waited for; see `carbon_operators.views`).

Airflow 3 evaluates links on the worker when the task finishes and stores the URL in XCom, so the serialised
DAG keeps only the link's name and XCom key; the link itself holds no state.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

from carbon_operators.target import zones_of
from carbon_sensors.errors import InvalidInputError

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

log = logging.getLogger(__name__)

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
    """Link from a carbon-aware task to the intensity page of its zone, for the task's run.

    A task with several zones links to the zone its XCom plan chose (else its first zone), so the chart
    shows the window where it was chosen.
    """

    name = "Carbon intensity"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        try:
            zones = zones_of(getattr(operator, "zone", None), None)
        except InvalidInputError:  # no zone on the task: the connection's default, unknown here
            return page_url(None)
        return run_page_url(chosen_zone(zones, ti_key), ti_key)


def chosen_zone(zones: tuple[str, ...], ti_key: TaskInstanceKey) -> str:
    """The zone of `zones` that the task's return value names; the first when it names none of them.

    Only a task with several zones asks XCom: one zone needs no lookup (and a link can be built off a worker).
    """
    if len(zones) == 1:
        return zones[0]
    try:
        value = XCom.get_value(ti_key=ti_key, key=XCom.XCOM_RETURN_KEY)
    except Exception:  # e.g. a custom XCom backend that fails: a link is a convenience, never an error
        log.warning("no return value to pick the chosen zone's link from; linking to %s", zones[0])
        value = None
    zone = value.get("zone") if isinstance(value, dict) else None
    return zone if zone in zones else zones[0]
