"""The order of the tests. The audits of the whole run (`audit_last`) come after every
other test, so that they see its statements and logs; the tests that read the kit's
jobs (tests/kit_jobs.py) just before them, so that the jobs have had the longest to
finish in the background.

When worker processes share the tests (`nox -s tests`: `-n 2 --dist loadgroup`), no
worker should sit waiting on the jobs: the first starts them with its first test and
takes the other tests while they run in its background, then the tests that read them
(group `kit`) once nothing else is left. The audits (group `audit`) wait for every other
test, so a worker holding one must not be the one still owed the kit's: they go last.
A pytest plugin (conftest.py loads it)."""

from typing import Any

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadGroupScheduling
from xdist.workermanage import WorkerController

JOBS_WORKER = "gw0"
JOBS_GROUP = "kit"
LAST_GROUP = "audit"


class JobsInTheBackground(LoadGroupScheduling):
    def _next_for(self, node: WorkerController) -> str | None:
        for scope in self.workqueue:
            if scope not in (JOBS_GROUP, LAST_GROUP):
                return scope
        if JOBS_GROUP in self.workqueue:
            return JOBS_GROUP if node.gateway.id == JOBS_WORKER else None
        return LAST_GROUP if LAST_GROUP in self.workqueue else None

    def _assign_work_unit(self, node: WorkerController) -> None:
        scope = self._next_for(node)
        if scope is None:
            return  # it is the jobs worker's turn: this one waits, or stops
        work_unit = self.workqueue.pop(scope)
        self.assigned_work.setdefault(node, {})[scope] = work_unit
        collection = self.registered_collections[node]
        node.send_runtest_some(
            [collection.index(nodeid) for nodeid, done in work_unit.items() if not done]
        )
        if scope == JOBS_GROUP or not self.workqueue:
            # The workers left waiting for it may go on: to the audits, or home. A worker
            # runs its last test only once it has another or is sent home (it tears down
            # knowing the next), so one left waiting holds back the audits.
            for other in self.assigned_work:
                if other is not node:
                    self._reschedule(other)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("audit_last") is not None:
            item.add_marker(pytest.mark.xdist_group(LAST_GROUP))
        elif item.get_closest_marker("kit") is not None:
            item.add_marker(pytest.mark.xdist_group(JOBS_GROUP))
    items.sort(
        key=lambda item: (
            item.get_closest_marker("audit_last") is not None,
            item.get_closest_marker("kit") is not None,
        )
    )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> Any:
    if config.getvalue("dist") == "loadgroup":
        return JobsInTheBackground(config, log)
    return None


def is_jobs_worker(worker: str | None) -> bool:
    """Whether this process starts the kit's jobs with its first test (under xdist)."""
    return worker == JOBS_WORKER
