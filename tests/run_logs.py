"""Everything the service logged during a test run, and the secrets that must never
appear in it: kept for the whole run (every worker process's share, tests/whole_run.py)
or, without one, in this object alone."""

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from whole_run import WholeRun

from service.logs import JsonFormatter


class RunLogs(logging.Handler):
    def __init__(self, run: WholeRun | None = None) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self._run = run
        self._kept: dict[str, list[Any]] = {}

    def _record(self, kind: str, value: Any) -> None:
        if self._run is not None:
            self._run.record(f"logs-{kind}", value)
        else:
            self._kept.setdefault(kind, []).append(value)

    def _read(self, kind: str) -> list[Any]:
        return self._run.read(f"logs-{kind}") if self._run is not None else self._kept.get(kind, [])

    def emit(self, record: logging.LogRecord) -> None:
        self._record("text", ["in-process", self.format(record)])

    def add(self, source: str, text: str) -> None:
        self._record("text", [source, text])

    def follow(self, source: str, path: Path) -> None:
        """A log file still being written (a server that outlives the scan): read as it
        stands whenever the logs are read."""
        self._record("followed", [source, str(path)])

    @property
    def texts(self) -> list[tuple[str, str]]:
        followed = [
            (source, Path(path).read_text(errors="replace"))
            for source, path in self._read("followed")
        ]
        return [*((source, text) for source, text in self._read("text")), *followed]

    def secret(self, value: str) -> None:
        if value:
            self._record("secret", value)

    @property
    def secrets(self) -> set[str]:
        return set(self._read("secret"))

    def database_url(self, url: str) -> None:
        """The URL itself and its password are both secrets."""
        self.secret(url)
        self.secret(urlsplit(url).password or "")

    def leaks(self) -> list[tuple[str, str]]:
        secrets = self.secrets
        return [
            (source, secret[:4] + "...")
            for source, text in self.texts
            for secret in secrets
            if secret in text
        ]
