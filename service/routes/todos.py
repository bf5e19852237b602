"""/api/v1/todos: each handler checks the body's type, then who is calling, then the
input, then asks the store, in the contract's order of checks; and it makes the store's
answer HTTP: entity tags with 304 and 412, the list's body, cursors and Link.

The handlers take the request itself rather than FastAPI dependencies and call the
same functions in that order: solving dependencies cost more than the statement on
these hot paths (bench/results/findings.md)."""

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from service import cursors
from service.db import Database
from service.errors import IdempotencyKeyReused, NotFound, PreconditionFailed
from service.identity import current_user
from service.models import TodoCreate, TodoUpdate
from service.parsing import json_body, parse_page, parse_request, parse_todo_id, wants_page
from service.routes import lists
from service.routes.etags import item_tag, list_tag, parse_condition
from service.store import Created, keys, todos

PREFIX = "/api/v1/todos"
router = APIRouter(prefix=PREFIX)

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


@router.post("", status_code=201)
async def create_todo(request: Request) -> Response:
    body = await json_body(request)
    caller = await current_user(request)
    parsed = parse_request(
        TodoCreate, body, idempotency_key=request.headers.getlist("idempotency-key")
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
    headers = {"Location": f"{PREFIX}/{created.todo_id}", "ETag": item_tag(created.version)}
    if created.replayed:
        headers["Idempotent-Replayed"] = "true"
    return _json(created.json, headers, 201)


@router.api_route("", methods=["GET", "HEAD"])
async def list_todos(request: Request) -> Response:
    caller = await current_user(request)
    db = _db(request)
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
            headers["Link"] = lists.next_link(PREFIX, wanted.limit, following)
        return _json(lists.page(items, following), headers)
    whole = await todos.list_all(db, caller.id)
    if whole is not None:
        return _json(lists.whole(whole), {**_READ, "ETag": list_tag(caller.id, whole.version)})
    # Too long to hold whole: streamed. The first batch is read before the status line
    # goes out, so an outage is still a clean 503 here.
    version, batches = await todos.stream_all(db, caller.id)
    headers = {**_READ, "ETag": list_tag(caller.id, version)}
    if request.method == "HEAD":
        # The same headers, without reading the whole list for a body nobody gets (nor
        # a Content-Length, which a streamed answer does not have either).
        await batches.aclose()
        head = Response(headers=headers, media_type=_JSON)
        del head.headers["content-length"]
        return head
    return StreamingResponse(lists.streamed(batches), media_type=_JSON, headers=headers)


@router.api_route("/{todo_id}", methods=["GET", "HEAD"])
async def get_todo(todo_id: str, request: Request) -> Response:
    caller = await current_user(request)
    wanted = parse_todo_id(todo_id)
    unless = parse_condition(request.headers.getlist("if-none-match"), "If-None-Match")
    found = await todos.get(_db(request), caller.id, wanted)
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


@router.patch("/{todo_id}")
async def update_todo(todo_id: str, request: Request) -> Response:
    body = await json_body(request)
    caller = await current_user(request)
    parsed = parse_request(TodoUpdate, body, todo_id)
    assert parsed.todo_id is not None
    written = await todos.patch(
        _db(request), caller.id, parsed.todo_id, parsed.body, _if_match(request)
    )
    if isinstance(written, todos.Unwritten):
        raise _unwritten(written)
    return _json(written.json, {"ETag": item_tag(written.version)})


@router.delete("/{todo_id}", status_code=204)
async def delete_todo(todo_id: str, request: Request) -> Response:
    caller = await current_user(request)
    todo = parse_todo_id(todo_id)
    refused = await todos.remove(_db(request), caller.id, todo, _if_match(request))
    if refused is not None:
        raise _unwritten(refused)
    return Response(status_code=204)
