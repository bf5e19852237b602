"""/api/v2/todos and /api/v1/todos: each handler checks the body's type, then who is
calling, then the input, then asks the store, in the contract's order of checks; and it
makes the store's answer HTTP: entity tags with 304 and 412, the list's body, cursors
and Link.

One todo, two views: both paths are answered by the same handlers, each with its
`Version` (the models it parses, the view the store spells a todo in). Only the list
differs in what it takes: 2.0's filters, sorts and pages by default (FR-201 to
FR-203), 1.x's whole list or its pages.

The handlers take the request itself rather than FastAPI dependencies and call the
same functions in that order: solving dependencies cost more than the statement on
these hot paths (bench/results/findings.md)."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.responses import Response, StreamingResponse

from service import cursors
from service.db import Database
from service.errors import IdempotencyKeyReused, NotFound, PreconditionFailed
from service.identity import current_user
from service.models import TodoCreate, TodoCreateV2, TodoUpdate, TodoUpdateV2
from service.parsing import json_body, parse_page, parse_request, parse_todo_id, wants_page
from service.queries import parse_list
from service.routes import lists
from service.routes.etags import item_tag, list_tag, parse_condition
from service.store import Caller, Created, View, keys, summary, todos
from service.store import lists as listed


@dataclass(frozen=True, slots=True)
class Version:
    """What a version of the API reads and shows."""

    prefix: str
    view: View
    creates: type[TodoCreate] | type[TodoCreateV2]
    updates: type[TodoUpdate] | type[TodoUpdateV2]
    # The path convertor of a todo id (Starlette's).
    ids: str


V1 = Version("/api/v1/todos", View.V1, TodoCreate, TodoUpdate, "str")
V2 = Version("/api/v2/todos", View.V2, TodoCreateV2, TodoUpdateV2, "v2_todo_id")
router = APIRouter()

# Answers depend on who asks, and must be revalidated (with the ETag) before reuse.
_READ = {"Cache-Control": "private, no-cache"}
_JSON = "application/json"


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _json(body: str, headers: dict[str, str], status: int = 200) -> Response:
    """A body PostgreSQL already wrote as JSON."""
    return Response(body, status, headers, _JSON)


def _not_found() -> NotFound:
    return NotFound("No todo with this id exists for this user.")


def _unwritten(why: todos.Unwritten) -> NotFound | PreconditionFailed:
    if why is todos.Unwritten.STALE:
        return PreconditionFailed(
            "The todo changed since the ETag given in If-Match; read it again and retry."
        )
    return _not_found()


def _not_modified(etag: str) -> Response:
    return Response(status_code=304, headers={**_READ, "ETag": etag})


async def create_todo(version: Version, request: Request) -> Response:
    body = await json_body(request)
    caller = await current_user(request)
    parsed = parse_request(
        version.creates, body, idempotency_key=request.headers.getlist("idempotency-key")
    )
    db = _db(request)
    created: Created | keys.Reused
    if parsed.idempotency_key is None:
        created = await todos.create(db, caller, parsed.body)
    else:
        created = await keys.create_once(db, caller, parsed.body, parsed.idempotency_key)
    if isinstance(created, keys.Reused):
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for a different request; use a new key."
        )
    headers = {
        "Location": f"{version.prefix}/{created.todo_id}",
        "ETag": item_tag(created.version),
    }
    if created.replayed:
        headers["Idempotent-Replayed"] = "true"
    return _json(created.json, headers, 201)


async def _list_v2(request: Request, caller: Caller, db: Database) -> Response:
    key = await db.cursor_key()
    wanted = parse_list(request.query_params, key)
    unless = parse_condition(request.headers.getlist("if-none-match"), "If-None-Match")
    if unless is not None:
        etag = list_tag(caller.id, await todos.list_version(db, caller.id))
        if unless.matches(etag, weak_comparison=True):
            return _not_modified(etag)
    items = await listed.page(
        db, caller.id, wanted.sort, wanted.filters, wanted.limit, wanted.after
    )
    following = None if items.last is None else cursors.encode_v2(key, items.last, wanted.bound)
    headers = {**_READ, "ETag": list_tag(caller.id, items.version)}
    if following is not None:
        headers["Link"] = lists.next_link_v2(V2.prefix, request.query_params, following)
    return _json(lists.page(items, following), headers)


async def list_todos(version: Version, request: Request) -> Response:
    caller = await current_user(request)
    db = _db(request)
    if version is V2:
        return await _list_v2(request, caller, db)
    unless = parse_condition(request.headers.getlist("if-none-match"), "If-None-Match")
    paged = wants_page(request.query_params)
    key = await db.cursor_key() if paged else b""
    wanted = parse_page(request.query_params, key) if paged else None
    if unless is not None:
        # The list's version alone: one index lookup, and the list is never read.
        etag = list_tag(caller.id, await todos.list_version(db, caller.id))
        if unless.matches(etag, weak_comparison=True):
            return _not_modified(etag)
    if wanted is not None:
        items = await todos.page(db, caller.id, wanted.limit, wanted.after)
        following = None if items.last is None else cursors.encode(key, items.last)
        headers = {**_READ, "ETag": list_tag(caller.id, items.version)}
        if following is not None:
            headers["Link"] = lists.next_link(V1.prefix, wanted.limit, following)
        return _json(lists.page(items, following), headers)
    whole = await todos.list_all(db, caller.id)
    if whole is not None:
        return _json(lists.whole(whole), {**_READ, "ETag": list_tag(caller.id, whole.version)})
    # Too long to hold whole: streamed. The first batch is read before the status line
    # goes out, so an outage is still a clean 503 here.
    at, batches = await todos.stream_all(db, caller.id)
    headers = {**_READ, "ETag": list_tag(caller.id, at)}
    if request.method == "HEAD":
        # The same headers, without reading the whole list for a body nobody gets (nor
        # a Content-Length, which a streamed answer does not have either).
        await batches.aclose()
        head = Response(headers=headers, media_type=_JSON)
        del head.headers["content-length"]
        return head
    return StreamingResponse(lists.streamed(batches), media_type=_JSON, headers=headers)


async def summarize_todos(request: Request) -> Response:
    """The caller's counts (FR-214), with the list's ETag: a matching If-None-Match is a
    304 from the list's version alone."""
    caller = await current_user(request)
    db = _db(request)
    unless = parse_condition(request.headers.getlist("if-none-match"), "If-None-Match")
    if unless is not None:
        etag = list_tag(caller.id, await todos.list_version(db, caller.id))
        if unless.matches(etag, weak_comparison=True):
            return _not_modified(etag)
    counted = await summary.summarize(db, caller.id)
    return _json(counted.json, {**_READ, "ETag": list_tag(caller.id, counted.version)})


async def get_todo(version: Version, todo_id: str, request: Request) -> Response:
    caller = await current_user(request)
    wanted = parse_todo_id(todo_id)
    unless = parse_condition(request.headers.getlist("if-none-match"), "If-None-Match")
    found = await todos.get(_db(request), caller.id, wanted, version.view)
    if found is None:
        raise _not_found()
    etag = item_tag(found.version)
    if unless is not None and unless.matches(etag, weak_comparison=True):
        return _not_modified(etag)
    return _json(found.json, {**_READ, "ETag": etag})


def _if_match(request: Request) -> list[int] | None:
    """The todo versions If-Match names; None when absent or `*` (which any existing
    todo matches, so the write is unconditional)."""
    condition = parse_condition(request.headers.getlist("if-match"), "If-Match")
    if condition is None or condition.any:
        return None
    return condition.item_versions(weak_comparison=False)


async def update_todo(version: Version, todo_id: str, request: Request) -> Response:
    body = await json_body(request)
    caller = await current_user(request)
    parsed = parse_request(version.updates, body, todo_id)
    assert parsed.todo_id is not None
    written = await todos.patch(
        _db(request), caller.id, parsed.todo_id, parsed.body, _if_match(request)
    )
    if isinstance(written, todos.Unwritten):
        raise _unwritten(written)
    return _json(written.json, {"ETag": item_tag(written.version)})


async def delete_todo(version: Version, todo_id: str, request: Request) -> Response:
    caller = await current_user(request)
    todo = parse_todo_id(todo_id)
    refused = await todos.remove(_db(request), caller.id, todo, _if_match(request))
    if refused is not None:
        raise _unwritten(refused)
    return Response(status_code=204)


_Handler = Callable[..., Awaitable[Response]]


def _routes(version: Version) -> None:
    """The handlers above at `version`'s paths, each given the version."""

    def at(handler: _Handler) -> _Handler:
        async def answer(request: Request) -> Response:
            return await handler(version, request)

        return answer

    def at_one(handler: _Handler) -> _Handler:
        async def answer(todo_id: str, request: Request) -> Response:
            return await handler(version, todo_id, request)

        return answer

    one = f"{version.prefix}/{{todo_id:{version.ids}}}"
    router.add_api_route(version.prefix, at(create_todo), methods=["POST"], status_code=201)
    router.add_api_route(version.prefix, at(list_todos), methods=["GET", "HEAD"])
    router.add_api_route(one, at_one(get_todo), methods=["GET", "HEAD"])
    router.add_api_route(one, at_one(update_todo), methods=["PATCH"])
    router.add_api_route(one, at_one(delete_todo), methods=["DELETE"], status_code=204)


class _NotTheSummary(StringConvertor):
    """A v2 todo id is any path segment but `summary`: so that /api/v2/todos/summary
    answers 405 naming GET and HEAD to another method, rather than reading `summary` as
    an id (a 422). 1.x's paths never had a summary, and still read it as an id."""

    regex = "(?!summary$)[^/]+"


register_url_convertor("v2_todo_id", _NotTheSummary())
router.add_api_route(f"{V2.prefix}/summary", summarize_todos, methods=["GET", "HEAD"])
for _version in (V1, V2):
    _routes(_version)
