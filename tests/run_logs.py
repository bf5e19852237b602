"""Everything the service logged during a test run, and the secrets that must never
appear in it."""

import logging
from urllib.parse import urlsplit

from service.logs import JsonFormatter


class RunLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.texts: list[tuple[str, str]] = []
        self.secrets: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(("in-process", self.format(record)))

    def add(self, source: str, text: str) -> None:
        self.texts.append((source, text))

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
