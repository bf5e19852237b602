"""What the tests that end a run read: the SQL statements every service engine sent and
the lines every service logged, in every process of the run, once every other test has
finished. `nox -s tests` runs pytest in several worker processes (pytest-xdist), so each
keeps its share in files of one directory (TESTS_WHOLE_RUN, made by the process that
starts the others) and the last tests read them all."""

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Not TODO_*: every `serve` the tests start inherits it, and refuses a TODO_* it
# does not know.
_VARIABLE = "TESTS_WHOLE_RUN"


def worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def begin() -> Path | None:
    """In the process that starts the run: the directory, made and named for the
    workers it starts (they inherit the environment). None where it was made already."""
    if os.environ.get(_VARIABLE):
        return None
    directory = Path(tempfile.mkdtemp(prefix="todo-tests-run-"))
    os.environ[_VARIABLE] = str(directory)
    return directory


class WholeRun:
    def __init__(self) -> None:
        self.directory = Path(os.environ[_VARIABLE])
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

    def finished(self, nodeid: str) -> None:
        self.record("finished", nodeid)

    def wait_for(self, nodeids: set[str], seconds: float = 900) -> None:
        """Until every test named has finished, in whichever process ran it."""
        deadline = time.monotonic() + seconds
        while missing := nodeids - set(self.read("finished")):
            assert time.monotonic() < deadline, f"{len(missing)} tests never finished"
            time.sleep(0.2)
