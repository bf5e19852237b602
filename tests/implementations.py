"""Implementations of the contract for the conformance kit's own tests (FR-148): the
service as shipped; the service with one defect put in; and the service in another
house style, answering differently wherever the contract leaves a choice (FR-172).
Served by tests/fleet.py, each on its own port and database.

Each defect is made where a real implementation would make it: in a statement, in
validation, or in what goes over the wire."""

import asyncio
import json
import os
import re
import time
import unicodedata
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import psycopg2
from starlette.datastructures import Headers
from starlette.middleware import Middleware as StarletteMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import db, identity, models
from service.app import create_app
from service.db import Database, libpq_url
from service.middleware import _header
from service.settings import get_settings
from service.store import FILTERS, Caller, Created, UserId, bulk, keys, lists, summary, todos

Middleware = Callable[[ASGIApp], ASGIApp]
_ID_PATH = re.compile(r"^/api/v1/todos/(?P<id>[^/]+)$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_FILTER = re.compile(r"\buser_id = %\(user_id\)s AND ")
SERVER_FIELDS = {"id", "user_id", "created_at", "updated_at", "is_completed"}


def _no_second_wall() -> None:
    """Requests run as the login role, which row-level security does not bind."""
    db.REQUEST_CONTEXT = db.REQUEST_CONTEXT.replace(
        "set_config('role', 'todo_app', true),\n       ", ""
    )


def _unfiltered(*names: str) -> None:
    _no_second_wall()
    for name in names:
        setattr(todos, name, _FILTER.sub("", getattr(todos, name)))


def _rewrite_response(
    change: Callable[[Scope, int, dict[str, str], bytes], tuple[int, dict[str, str], bytes]],
) -> Middleware:
    """A middleware that holds each answer whole and sends `change(...)` of it."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            start: dict[str, Any] = {}
            chunks: list[bytes] = []

            async def hold(message: Message) -> None:
                if message["type"] == "http.response.start":
                    start.update(message)
                else:
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body"):
                        headers = {k.decode(): v.decode() for k, v in start["headers"]}
                        status, headers, body = change(
                            scope, start["status"], headers, b"".join(chunks)
                        )
                        headers["content-length"] = str(len(body))
                        pairs = [(k.encode(), v.encode()) for k, v in headers.items()]
                        await send(
                            {"type": "http.response.start", "status": status, "headers": pairs}
                        )
                        await send({"type": "http.response.body", "body": body})

            await app(scope, receive, hold)

        return middleware

    return wrap


def _rewrite_request(change: Callable[[Scope, bytes], tuple[Scope, bytes]]) -> Middleware:
    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            scope, body = change(scope, body)
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if sent:
                    return {"type": "http.disconnect"}
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            await app(scope, replay, send)

        return middleware

    return wrap


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _forbidden_not_missing() -> Middleware:
    url = libpq_url(os.environ["NEON_DATABASE_URL"])

    def exists(todo_id: str) -> bool:
        with psycopg2.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM todos WHERE id = %s", (todo_id,))
            return cursor.fetchone() is not None

    def change(
        scope: Scope, status: int, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        found = _ID_PATH.match(scope["path"])
        if status == 404 and found and _UUID.match(found["id"]) and exists(found["id"]):
            problem = {"type": "/problems/forbidden", "title": "Forbidden", "status": 403,
                       "detail": "This todo is someone else's.", "code": "FORBIDDEN"}  # fmt: skip
            return 403, headers, json.dumps(problem).encode()
        return status, headers, body

    return _rewrite_response(change)


def _default_user(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not any(k == b"x-user-id" for k, _ in scope["headers"]):
            scope = {
                **scope,
                "headers": [
                    *scope["headers"],
                    (b"x-user-id", b"00000000-0000-4000-8000-000000000001"),
                ],
            }
        await app(scope, receive, send)

    return middleware


def _truncated(field: str, most: int) -> Callable[[Scope, bytes], tuple[Scope, bytes]]:
    """Cuts `field` down to `most` characters instead of refusing it."""

    def change(scope: Scope, body: bytes) -> tuple[Scope, bytes]:
        data = _json_body(body)
        if isinstance(data, dict) and isinstance(data.get(field), str) and len(data[field]) > most:
            data[field] = data[field][:most]
            return scope, json.dumps(data).encode()
        return scope, body

    return change


def _normalized(field: str) -> Callable[[Scope, bytes], tuple[Scope, bytes]]:
    """Stores `field` NFC-normalized: a decomposed spelling comes back composed."""

    def change(scope: Scope, body: bytes) -> tuple[Scope, bytes]:
        data = _json_body(body)
        value = data.get(field) if isinstance(data, dict) else None
        if isinstance(value, str) and unicodedata.normalize("NFC", value) != value:
            data[field] = unicodedata.normalize("NFC", value)
            return scope, json.dumps(data).encode()
        return scope, body

    return change


def _counted_in_bytes(field: str, most: int) -> Callable[[Scope, bytes], tuple[Scope, bytes]]:
    """Measures `field` in UTF-8 bytes: a value that fits in characters but not in bytes is
    refused as too long (padded here to what the service refuses as too long)."""

    def change(scope: Scope, body: bytes) -> tuple[Scope, bytes]:
        data = _json_body(body)
        value = data.get(field) if isinstance(data, dict) else None
        if isinstance(value, str) and len(value) <= most < len(value.encode("utf-8", "replace")):
            data[field] = value + "x" * (most + 1 - len(value))
            return scope, json.dumps(data).encode()
        return scope, body

    return change


def _case_sensitive_user_ids() -> None:
    """User ids kept as the text sent: the same id with capitals is another user."""
    from_header = identity._from_header

    def keyed_by_text(headers: Headers) -> Caller:
        caller = from_header(headers)
        sent = headers.get("x-user-id", "")
        if sent == sent.lower():
            return caller
        return Caller(UserId(uuid.uuid5(uuid.NAMESPACE_OID, sent)))

    identity._from_header = keyed_by_text


def _updated_after_created() -> None:
    """A create stamps updated_at with the clock at the insert, and created_at with the
    transaction's start: two instants."""
    columns = "title_folded, description_folded)\nVALUES"
    values = "%(title_folded)s, %(description_folded)s)\n"
    assert columns in todos.CREATE and values in todos.CREATE
    todos.CREATE = todos.CREATE.replace(
        columns, "title_folded, description_folded, updated_at)\nVALUES"
    ).replace(values, "%(title_folded)s, %(description_folded)s, clock_timestamp())\n")


def _server_fields_ignored(scope: Scope, body: bytes) -> tuple[Scope, bytes]:
    """A create naming what the server decides is taken without those fields."""
    data = _json_body(body)
    if scope["method"] != "POST" or not isinstance(data, dict):
        return scope, body
    kept = {k: v for k, v in data.items() if k not in SERVER_FIELDS}
    return scope, body if kept == data else json.dumps(kept).encode()


def _last_member_wins(scope: Scope, body: bytes) -> tuple[Scope, bytes]:
    """A JSON member named twice is read as Python's json reads it: the last one counts."""
    repeated = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        repeated = repeated or len({k for k, _ in items}) < len(items)
        return dict(items)

    try:
        data = json.loads(body, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return scope, body
    return scope, json.dumps(data).encode() if repeated else body


def _slow_creates(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            await asyncio.sleep(2.1)
        await app(scope, receive, send)

    return middleware


def _first_answer_kept() -> Middleware:
    """A cache of each todo as created, in front of its reads, never told of a change."""
    seen: dict[tuple[str, str | None], bytes] = {}

    def change(
        scope: Scope, status: int, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        caller = _header(scope, b"x-user-id")
        if scope["method"] == "POST" and status == 201 and "location" in headers:
            seen[(urlsplit(headers["location"]).path, caller)] = body
        elif scope["method"] == "GET" and status == 200 and _ID_PATH.match(scope["path"]):
            return status, headers, seen.get((scope["path"], caller), body)
        return status, headers, body

    return _rewrite_response(change)


def _bad_id_is_500(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        found = _ID_PATH.match(scope.get("path", ""))
        if found and not _UUID.match(found["id"]):
            raise RuntimeError("not a UUID")
        await app(scope, receive, send)

    return middleware


def _frozen_updated_at(
    scope: Scope, status: int, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    data = _json_body(body) if headers.get("content-type") == "application/json" else None
    items = data.get("items") if isinstance(data, dict) and "items" in data else [data]
    changed = False
    for todo in items or []:
        if isinstance(todo, dict) and "updated_at" in todo:
            todo["updated_at"] = todo["created_at"]
            changed = True
    return status, headers, json.dumps(data).encode() if changed else body


def _not_problems(
    scope: Scope, status: int, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    if headers.get("content-type") != "application/problem+json":
        return status, headers, body
    detail = (_json_body(body) or {}).get("detail", "error")
    headers["content-type"] = "application/json"
    return status, headers, json.dumps({"error": detail}).encode()


def _empty_is_null(scope: Scope, body: bytes) -> tuple[Scope, bytes]:
    data = _json_body(body)
    if isinstance(data, dict) and data.get("description") == "":
        data["description"] = None
        return scope, json.dumps(data).encode()
    return scope, body


def _replays_create_again() -> None:
    once = keys.create_once

    async def create_once(database: Database, caller: Any, data: Any, key: str) -> Any:
        made = await once(database, caller, data, key)
        if isinstance(made, Created) and made.replayed:
            fresh = await todos.create(database, caller, data)
            assert isinstance(fresh, Created)
            return Created(fresh.json, fresh.version, fresh.todo_id, replayed=True)
        return made

    keys.create_once = create_once  # type: ignore[assignment]


def _stale_etags() -> None:
    for module in (todos, keys):
        for name, statement in vars(module).items():
            if name.isupper() and isinstance(statement, str):
                changed = statement.replace(
                    "extract(epoch FROM updated_at)", "extract(epoch FROM created_at)"
                )
                setattr(module, name, changed)


def _blank_titles() -> None:
    models._WHITESPACE = frozenset()
    models._BLANK = frozenset()


def _oldest_first() -> None:
    for name in ("LIST", "STREAM"):
        setattr(
            todos, name, getattr(todos, name).replace("created_at DESC, id DESC", "created_at, id")
        )


def _delete_keeps_the_row() -> None:
    todos.REMOVE = "SELECT id FROM todos WHERE user_id = %(user_id)s AND id = %(todo_id)s"


def _list_of_everyone() -> None:
    """The whole list, read without its user: every user's todos, to everyone."""
    _no_second_wall()
    for name in ("LIST", "STREAM"):
        statement = getattr(todos, name)
        assert "WHERE user_id = %(user_id)s\n" in statement
        setattr(todos, name, statement.replace("WHERE user_id = %(user_id)s\n", "WHERE true\n"))


def _created_is_200(
    scope: Scope, status: int, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    return (200 if status == 201 else status), headers, body


def _page_skips() -> None:
    todos.PAGE = todos.PAGE.replace(
        "LIMIT %(limit)s + 1",
        "LIMIT %(limit)s + 1 OFFSET CASE WHEN %(after_id)s::uuid IS NULL THEN 0 ELSE 1 END",
    )


def _v2_pages(old: str, new: str, keyed_only: bool = False) -> None:
    """Each of /api/v2's page statements (only those with a sort key: `keyed_only`)
    with `old` written as `new`."""
    for sort in lists.SORTS.values():
        if keyed_only and sort.key == "none":
            continue
        statement = getattr(lists, sort.statement_name)
        assert old in statement, (sort.statement_name, old)
        setattr(lists, sort.statement_name, statement.replace(old, new))


def _filter_ignores_the_caller() -> None:
    """A tag filter that stands in for the user's condition (as if a tag were the
    caller's alone): with a tag asked for, any user's todos carrying it are listed."""
    _no_second_wall()
    _v2_pages(
        "WHERE user_id = %(user_id)s\n",
        "WHERE (user_id = %(user_id)s OR %(tags)s::text[] IS NOT NULL)\n",
    )


def _sort_loses_ties() -> None:
    """A keyed sort's cursor compares the key alone, not (key, created_at, id): the rest
    of a tie after a page's last todo is skipped."""
    _v2_pages(", created_at, id)\n", ")\n", keyed_only=True)
    _v2_pages(", %(after_created_at)s::timestamptz, %(after_id)s::uuid)", ")", keyed_only=True)


def _cursor_leaks() -> None:
    """The cursor's condition lost its parentheses: `user AND filters AND no cursor OR
    past the cursor`, so every page after the first reads every user's todos."""
    _no_second_wall()
    _v2_pages("AND (%(after_id)s::uuid IS NULL", "AND %(after_id)s::uuid IS NULL")
    _v2_pages("%(after_id)s::uuid))", "%(after_id)s::uuid)")


def _summary_counts_everyone() -> None:
    """The summary's count reads every user's todos: its condition on the caller gone,
    and row-level security with it."""
    _no_second_wall()
    summary.SUMMARY = summary.SUMMARY.removesuffix("\nWHERE user_id = %(user_id)s")


def _bulk_delete_ignores_its_filters() -> None:
    """A bulk DELETE that drops its filters: every todo of the caller goes."""
    bulk.DELETE = bulk.DELETE.replace(FILTERS, "")
    bulk.DELETE_KEYED = bulk.DELETE_KEYED.replace(FILTERS, "")


def _bulk_ignores_the_caller() -> None:
    """Bulk writes that drop their condition on the caller, row-level security with it:
    every user's todos that meet the filters are written."""
    _no_second_wall()
    for name in ("UPDATE", "UPDATE_KEYED", "DELETE", "DELETE_KEYED"):
        setattr(bulk, name, getattr(bulk, name).replace("user_id = %(user_id)s", "true"))


# Each defect: what it changes in the service, and the middleware it adds (if any).
DEFECTS: dict[str, tuple[Callable[[], None] | None, Middleware | None]] = {
    "foreign-readable": (lambda: _unfiltered("GET"), None),
    "foreign-writable": (lambda: _unfiltered("PATCH", "PATCH_DESCRIPTION"), None),
    "foreign-deletable": (lambda: _unfiltered("REMOVE"), None),
    "forbidden-not-missing": (None, None),
    "default-user": (None, _default_user),
    "blank-title": (_blank_titles, None),
    "long-title": (None, _rewrite_request(_truncated("title", 255))),
    "long-description": (None, _rewrite_request(_truncated("description", 2000))),
    "server-fields-ignored": (None, _rewrite_request(_server_fields_ignored)),
    "last-member-wins": (None, _rewrite_request(_last_member_wins)),
    "slow-create": (None, _slow_creates),
    "first-answer-kept": (None, _first_answer_kept()),
    "bad-id-500": (None, _bad_id_is_500),
    "oldest-first": (_oldest_first, None),
    "frozen-updated-at": (None, _rewrite_response(_frozen_updated_at)),
    "delete-keeps-row": (_delete_keeps_the_row, None),
    "not-problems": (None, _rewrite_response(_not_problems)),
    "empty-is-null": (None, _rewrite_request(_empty_is_null)),
    "stale-etag": (_stale_etags, None),
    "replay-creates-again": (_replays_create_again, None),
    "page-skips": (_page_skips, None),
    "list-of-everyone": (_list_of_everyone, None),
    "created-is-200": (None, _rewrite_response(_created_is_200)),
    "user-id-case": (_case_sensitive_user_ids, None),
    "nfc-titles": (None, _rewrite_request(_normalized("title"))),
    "title-bytes": (None, _rewrite_request(_counted_in_bytes("title", 255))),
    "updated-at-differs": (_updated_after_created, None),
    "v2-filter-ignores-the-caller": (_filter_ignores_the_caller, None),
    "v2-sort-loses-ties": (_sort_loses_ties, None),
    "v2-cursor-leaks": (_cursor_leaks, None),
    "v2-summary-counts-everyone": (_summary_counts_everyone, None),
    "v2-bulk-delete-ignores-its-filters": (_bulk_delete_ignores_its_filters, None),
    "v2-bulk-ignores-the-caller": (_bulk_ignores_the_caller, None),
}


SHIPPED = "shipped"
HOUSE_STYLE = "house-style"


def build(name: str) -> ASGIApp:
    """The implementation `name`: SHIPPED, HOUSE_STYLE, or the service with that defect
    put in."""
    if name == HOUSE_STYLE:
        return HouseStyle(create_app(get_settings()))
    change, middleware = DEFECTS[name] if name != SHIPPED else (None, None)
    if change is not None:
        change()
    if name == "forbidden-not-missing":
        middleware = _forbidden_not_missing()
    app = create_app(get_settings())
    if middleware is not None:
        # Innermost, inside the service's own middleware: what it does wrong still goes
        # out through the request id, the access log and the last-resort 500.
        app.user_middleware.append(StarletteMiddleware(middleware))
    return app


# -- another house style: every choice the contract leaves open, made otherwise --------

_OFFSET = re.compile(rb'("(?:created|updated)_at":\s*"[^"]+?)\+00:00"')
_BODY_LIMIT = 64 * 1024


class HouseStyle:
    """The service as another team might have written it, conforming throughout:
    - a charset parameter on application/json is ignored (RFC 8259), latin-1 included;
    - a body not declared as JSON is refused (415) before its size is looked at (413);
    - timestamps end in `Z`, and a todo's members come in another order;
    - problems carry `type` URIs and titles of their own, and extension members that
      differ at every request (a trace id, a time, the instance);
    - answers carry extra headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = (_header(scope, b"content-type") or "").strip()
        if declared.split(";")[0].strip().lower() == "application/json":
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        elif scope["method"] in {"POST", "PATCH"} and _too_large(scope) and declared:
            await _refuse_unsupported(send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def restyled(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
            kind = dict(headers).get(b"content-type", b"")
            body = _restyled(b"".join(chunks), kind, scope["path"])
            headers += [
                (b"content-length", str(len(body)).encode()),
                (b"x-powered-by", b"house-style"),
                (b"cache-control", b"no-store"),
            ]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, restyled)


def _too_large(scope: Scope) -> bool:
    length = _header(scope, b"content-length") or "0"
    return length.isdigit() and int(length) > _BODY_LIMIT


async def _refuse_unsupported(send: Send) -> None:
    problem = {
        "type": "https://errors.house-style.example/unsupported-media-type",
        "title": "We only read JSON",
        "status": 415,
        "detail": "Send the body as application/json.",
        "code": "UNSUPPORTED_MEDIA_TYPE",
        "trace": uuid.uuid4().hex,
    }
    body = json.dumps(problem).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 415, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _restyled(body: bytes, kind: bytes, path: str) -> bytes:
    if not body:
        return body
    if kind.startswith(b"application/problem+json"):
        problem = json.loads(body)
        code = str(problem.get("code", "problem")).lower().replace("_", "-")
        return json.dumps(
            {
                "code": problem.get("code"),
                "status": problem.get("status"),
                "title": f"Refused: {code.replace('-', ' ')}",
                "type": f"https://errors.house-style.example/{code}",
                "detail": problem.get("detail"),
                **({"errors": problem["errors"]} if "errors" in problem else {}),
                **({"limit": problem["limit"]} if "limit" in problem else {}),
                "instance": f"{path}#{uuid.uuid4().hex[:12]}",
                "trace": uuid.uuid4().hex,
                "at": time.time(),
            }
        ).encode()
    if kind.startswith(b"application/json"):
        data = json.loads(_OFFSET.sub(rb'\1Z"', body))
        if isinstance(data, dict) and isinstance(data.get("items"), list):
            data["items"] = [_reordered(t) for t in data["items"]]
            return json.dumps(dict(reversed(list(data.items())))).encode()
        return json.dumps(_reordered(data)).encode()
    return body


def _reordered(todo: Any) -> Any:
    return dict(reversed(list(todo.items()))) if isinstance(todo, dict) else todo
