"""Everything the service logged during a test run, and the secrets that must never
appear in it."""

import logging
from pathlib import Path
from urllib.parse import urlsplit

from service.logs import JsonFormatter


class RunLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self._texts: list[tuple[str, str]] = []
        self._followed: list[tuple[str, Path]] = []
        self.secrets: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self._texts.append(("in-process", self.format(record)))

    def add(self, source: str, text: str) -> None:
        self._texts.append((source, text))

    def follow(self, source: str, path: Path) -> None:
        """A log file still being written (a server that outlives the scan): read as it
        stands whenever the logs are read."""
        self._followed.append((source, path))

    @property
    def texts(self) -> list[tuple[str, str]]:
        followed = [(source, path.read_text(errors="replace")) for source, path in self._followed]
        return [*self._texts, *followed]

    def secret(self, value: str) -> None:
        if value:
            self.secrets.add(value)

    def database_url(self, url: str) -> None:
        """The URL itself and its password are both secrets."""
        self.secret(url)
        self.secret(urlsplit(url).password or "")

    def leaks(self) -> list[tuple[str, str]]:
        return [
            (source, secret[:4] + "...")
            for source, text in self.texts
            for secret in self.secrets
            if secret in text
        ]
