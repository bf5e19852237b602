"""What the service says about itself as it works, to whoever listens: the code that does
the work reports here, and what listens is chosen at start (service/metrics.py with
TODO_METRICS_PORT, service/tracing.py with OTEL_EXPORTER_OTLP_ENDPOINT). With neither
set, nothing listens: a report is one call of a method that does nothing, and neither
prometheus-client nor OpenTelemetry is ever imported."""

from collections.abc import Callable, MutableMapping, Sequence
from typing import Any, NamedTuple


class PoolState(NamedTuple):
    """A pool's connections at one moment."""

    used: int
    idle: int
    most: int  # the most it opens at once


class Listener:
    """Hears every report and does nothing with it; a listener overrides what it uses."""

    def request_started(self, scope: MutableMapping[str, Any]) -> Any:
        """A request came in; what is returned comes back to `request_finished`."""
        return None

    def request_finished(
        self, started: Any, method: str, route: str | None, status: int, seconds: float
    ) -> None:
        """`route` is the template the request matched (None: none matched)."""

    def pool_opened(self, state: Callable[[], PoolState]) -> None:
        """The worker's pool exists; `state()` tells its connections whenever asked,
        from any thread."""

    def connection_waited(self, seconds: float) -> None:
        """How long a statement waited for a connection of the pool (opening one
        included)."""

    def statement_started(self, statement: str) -> Any:
        """A statement is sent (its text: the values are not in it); what is returned
        comes back to `statement_finished`."""
        return None

    def statement_finished(self, started: Any, seconds: float, failed: bool) -> None:
        pass

    def problem(self, code: str, cause: str | None) -> None:
        """A problem answer (`cause`: why a 503 is one)."""

    def token_checked(self, outcome: str) -> None:
        """A bearer token was checked: `valid`, or the code it was refused with."""

    def keys_fetched(self, outcome: str) -> None:
        """The auth server's keys were fetched: `ok`, `failed` or `no_usable_key`."""

    def close(self) -> None:
        """The worker stops: whatever is held is sent."""


class _All(Listener):
    """Several listeners, each told everything in turn."""

    def __init__(self, listeners: Sequence[Listener]) -> None:
        self.listeners = tuple(listeners)

    def request_started(self, scope: MutableMapping[str, Any]) -> Any:
        return [each.request_started(scope) for each in self.listeners]

    def request_finished(
        self, started: Any, method: str, route: str | None, status: int, seconds: float
    ) -> None:
        for each, mine in zip(self.listeners, started, strict=True):
            each.request_finished(mine, method, route, status, seconds)

    def pool_opened(self, state: Callable[[], PoolState]) -> None:
        for each in self.listeners:
            each.pool_opened(state)

    def connection_waited(self, seconds: float) -> None:
        for each in self.listeners:
            each.connection_waited(seconds)

    def statement_started(self, statement: str) -> Any:
        return [each.statement_started(statement) for each in self.listeners]

    def statement_finished(self, started: Any, seconds: float, failed: bool) -> None:
        for each, mine in zip(self.listeners, started, strict=True):
            each.statement_finished(mine, seconds, failed)

    def problem(self, code: str, cause: str | None) -> None:
        for each in self.listeners:
            each.problem(code, cause)

    def token_checked(self, outcome: str) -> None:
        for each in self.listeners:
            each.token_checked(outcome)

    def keys_fetched(self, outcome: str) -> None:
        for each in self.listeners:
            each.keys_fetched(outcome)

    def close(self) -> None:
        for each in self.listeners:
            each.close()


listener = Listener()


def listen(*listeners: Listener) -> None:
    """From now on, in this process, these hear every report."""
    global listener
    listener = listeners[0] if len(listeners) == 1 else _All(listeners)
