"""The target as the kit reaches it: one HTTP client that keeps every exchange (so a
failure can show its request, its response and a curl line that sends it again), never
goes faster than --max-rps, and refuses to write in a --read-only run."""

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx

READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REDACTED = "[redacted]"
# Credentials never shown in a report; a curl line names them by a variable instead.
SECRET_HEADERS = frozenset({"authorization", "cookie", "set-cookie"})

Headers = Sequence[tuple[str, str | bytes]]
# What the client adds on its own and curl adds again: not part of an exchange's record.
_OWN = frozenset({b"host", b"content-length", b"connection"})


class KitFault(Exception):
    """The kit did something it must not (a write in a read-only run): its own bug."""


class Unreachable(Exception):
    """The target did not answer at all."""


@dataclass
class Exchange:
    """One request and its response, exactly as sent and received."""

    method: str
    url: str
    request_headers: list[tuple[str, bytes]]
    request_body: bytes
    status: int
    headers: httpx.Headers
    body: bytes
    elapsed: float
    user: str | None = None

    def json(self) -> Any:
        return json.loads(self.body)

    def json_or_none(self) -> Any:
        try:
            return self.json()
        except ValueError:
            return None

    def header(self, name: str) -> str | None:
        value: str | None = self.headers.get(name)
        return value

    @property
    def media_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    def shown(self) -> dict[str, Any]:
        """For a report: credentials redacted, bodies as text where they are text."""

        def headers(pairs: list[tuple[str, bytes]]) -> list[list[str]]:
            return [
                [name, REDACTED if name.lower() in SECRET_HEADERS else _text(value)]
                for name, value in pairs
            ]

        return {
            "request": {
                "method": self.method,
                "url": self.url,
                "headers": headers(self.request_headers),
                "body": _text(self.request_body),
            },
            "response": {
                "status": self.status,
                "headers": headers([(k, v.encode("latin-1")) for k, v in self.headers.items()]),
                "body": _text(self.body[:8192]) + ("..." if len(self.body) > 8192 else ""),
            },
            "curl": curl(self),
        }


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="backslashreplace")


def _quoted(value: bytes) -> str:
    """A shell word that is exactly these bytes: '...' when printable, else $'...'."""
    if all(0x20 <= b < 0x7F for b in value) and b"'" not in value:
        return "'" + value.decode("ascii") + "'"
    escaped = "".join(
        chr(b) if 0x20 <= b < 0x7F and b not in (0x27, 0x5C) else f"\\x{b:02x}" for b in value
    )
    return "$'" + escaped + "'"


def curl(exchange: Exchange) -> str:
    """A curl command that sends this request again, byte for byte (a credential is
    named by a shell variable, $TODO_CONFORMANCE_TOKEN, never written out)."""
    method = exchange.method
    parts = ["curl", "-sS", "-i", "--path-as-is", "-g"]
    parts += ["--head"] if method == "HEAD" else ["-X", method]
    parts.append(_quoted(exchange.url.encode()))
    sent = {name.lower() for name, _ in exchange.request_headers}
    for name, value in exchange.request_headers:
        if name.lower() in SECRET_HEADERS:
            parts += ["-H", f'"{name}: Bearer $TODO_CONFORMANCE_TOKEN"']
        else:
            parts += ["-H", _quoted(name.encode() + b": " + value)]
    if exchange.request_body or method in {"POST", "PATCH", "PUT"}:
        if "content-type" not in sent:
            parts += ["-H", "'Content-Type:'"]
        parts += ["--data-binary", _quoted(exchange.request_body)]
    for header in ("accept", "user-agent"):
        if header not in sent:
            parts += ["-H", f"'{header.title()}:'"]
    return " ".join(parts)


@dataclass
class _Pace:
    """At most `rate` requests a second, across threads."""

    rate: float | None
    _next: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self) -> None:
        if not self.rate:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + 1 / self.rate
        if start > now:
            time.sleep(start - now)


# How many times a request refused for its rate (429) is sent again after Retry-After.
PATIENCE = 20


class Target:
    """The deployment under test, at `base_url`. A target that limits its callers'
    rate is waited for (Retry-After) and asked again, unless a check wants the 429."""

    def __init__(
        self, base_url: str, *, read_only: bool, max_rps: float | None, timeout: float = 30
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.read_only = read_only
        self._pace = _Pace(max_rps)
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)
        self._local = threading.local()
        self._counting = threading.Lock()
        self.sent = 0

    def url(self, path: str) -> str:
        return urljoin(self.base_url + "/", path.lstrip("/"))

    def watching(self) -> list[Exchange]:
        """From now on, this thread's exchanges are also kept in the list returned."""
        seen: list[Exchange] = []
        self._local.seen = seen
        return seen

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Headers = (),
        body: bytes | None = None,
        json_body: Any = None,
        user: str | None = None,
        patient: bool = True,
    ) -> Exchange:
        for _ in range(PATIENCE if patient else 1):
            answer = self._send(method, path, headers, body, json_body, user)
            wait = answer.header("retry-after") or ""
            if not (answer.status == 429 and wait.isdigit()):
                break
            time.sleep(min(int(wait), 60))
        return answer

    def _send(
        self,
        method: str,
        path: str,
        headers: Headers,
        body: bytes | None,
        json_body: Any,
        user: str | None,
    ) -> Exchange:
        method = method.upper()
        if self.read_only and method not in READ_ONLY_METHODS:
            raise KitFault(f"a {method} in a --read-only run")
        pairs: list[tuple[str, bytes]] = [
            (name, value if isinstance(value, bytes) else value.encode("latin-1"))
            for name, value in headers
        ]
        if json_body is not None:
            body = json.dumps(json_body, ensure_ascii=False).encode()
            if not any(name.lower() == "content-type" for name, _ in pairs):
                pairs.append(("Content-Type", b"application/json"))
        content = body or b""
        url = self.url(path)
        request = self._client.build_request(method, url, content=content or None)
        # Exactly the headers given, in order and repeated as given: a default header
        # the client would add (accept, user-agent, connection) stays, nothing else.
        given = {name.lower() for name, _ in pairs} | {"accept-encoding"}
        kept = [(k, v) for k, v in request.headers.raw if k.decode().lower() not in given]
        request.headers = httpx.Headers(kept + [(n.encode("latin-1"), v) for n, v in pairs])
        self._pace.wait()
        started = time.monotonic()
        try:
            response = self._client.send(request)
        except httpx.TransportError as error:
            raise Unreachable(f"{method} {url}: {type(error).__name__}: {error}") from error
        with self._counting:
            self.sent += 1
        exchange = Exchange(
            method,
            url,
            [(k.decode("latin-1"), v) for k, v in request.headers.raw if k.lower() not in _OWN],
            content,
            response.status_code,
            response.headers,
            response.content,
            time.monotonic() - started,
            user,
        )
        seen = getattr(self._local, "seen", None)
        if seen is not None:
            seen.append(exchange)
        return exchange

    def close(self) -> None:
        self._client.close()
