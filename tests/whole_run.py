"""What the audits of a whole run read: the SQL statements every service engine sent
and the lines every service logged, in every process of the run. `nox -s tests` runs
pytest twice: the suite, in several worker processes (pytest-xdist) beside the kit's
jobs in a process of their own (tests/kit_jobs.py), then the audits (`audit_last`)
over what the first step kept. Each process keeps its share in files of one directory
(TESTS_RUN: given by nox to both steps, or made by the process that starts the
others) and the audits read them all."""

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

# The run's variables are not TODO_*: every `serve` the tests start inherits them, and
# refuses a TODO_* variable it does not know.
_VARIABLE = "TESTS_RUN"
# A process of the run that is no pytest-xdist worker names itself here (the kit's jobs).
_PROCESS = "TESTS_PROCESS"


def worker() -> str:
    return os.environ.get(_PROCESS) or os.environ.get("PYTEST_XDIST_WORKER", "main")


def begin() -> Path | None:
    """In the process that starts the run: the directory, made and named for the
    processes it starts (they inherit the environment). None where it was given."""
    if os.environ.get(_VARIABLE):
        return None
    made = Path(tempfile.mkdtemp(prefix="todo-tests-run-"))
    os.environ[_VARIABLE] = str(made)
    return made


def directory() -> Path | None:
    """The run's directory, once begun."""
    given = os.environ.get(_VARIABLE)
    return Path(given) if given else None


class WholeRun:
    def __init__(self) -> None:
        found = directory()
        assert found is not None, f"{_VARIABLE} is set by the process that starts the run"
        self.directory = found
        self._lock = threading.Lock()

    def record(self, kind: str, value: Any) -> None:
        """One value of `kind`, kept for the whole run to read (JSON lines, one file per
        kind and process: appends of one process never interleave with another's)."""
        line = json.dumps(value) + "\n"
        with self._lock, (self.directory / f"{kind}-{worker()}.jsonl").open("a") as out:
            out.write(line)

    def read(self, kind: str) -> list[Any]:
        """Every value of `kind` that every process recorded."""
        return [
            json.loads(line)
            for path in sorted(self.directory.glob(f"{kind}-*.jsonl"))
            for line in path.read_text().splitlines()
        ]
