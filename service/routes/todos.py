"""/api/v1/todos: each handler checks the body's type, then who is calling, then the
input, then asks the data layer, in the contract's order of checks.

The handlers take the request itself rather than FastAPI dependencies and call the
same functions in that order: solving dependencies cost more than the statement on
these hot paths (see the README's performance section)."""

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from service import todos
from service.errors import NotFound, UnsupportedMediaType
from service.etags import parse_condition
from service.identity import current_user
from service.models import TodoCreate, TodoUpdate
from service.parsing import parse_page, parse_request, parse_todo_id, wants_page
from service.routes.responses import database, json_text

PREFIX = "/api/v1/todos"
router = APIRouter(prefix=PREFIX)

# Answers depend on who asks, and must be revalidated (with the ETag) before reuse.
_READ = {"Cache-Control": "private, no-cache"}


def _is_json(content_type: str) -> bool:
    media, _, parameters = content_type.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        return False
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            return False
    return True


async def json_body(request: Request) -> bytes:
    if not _is_json(request.headers.get("content-type", "")):
        raise UnsupportedMediaType(
            "Send the body as JSON in UTF-8 with Content-Type: application/json."
        )
    return await request.body()


def _not_found() -> NotFound:
    return NotFound("No todo with this id exists for this user.")


def _not_modified(etag: str) -> Response:
    return Response(status_code=304, headers={**_READ, "ETag": etag})


@router.post("", status_code=201)
async def create_todo(request: Request) -> Response:
    body = await json_body(request)
    caller = await current_user(request)
    db = database(request)
    parsed = parse_request(
        TodoCreate, body, idempotency_key=request.headers.getlist("idempotency-key")
    )
    if parsed.idempotency_key is None:
        created = await todos.create(db, caller, parsed.body)
    else:
        created = await todos.create_once(db, caller, parsed.body, parsed.idempotency_key)
    headers = {"Location": f"{PREFIX}/{created.todo_id}", "ETag": created.etag}
    if created.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_text(created.json, 201, headers)


@router.get("")
async def list_todos(request: Request) -> Response:
    caller = await current_user(request)
    db = database(request)
    unless = parse_condition(request.headers.getlist("if-none-match"))
    if wants_page(request.query_params):
        key = await db.cursor_key()
        wanted = parse_page(request.query_params, key)
        page = await todos.page(db, caller.id, wanted, key, unless)
        if page.json is None:
            return _not_modified(page.etag)
        headers = {**_READ, "ETag": page.etag}
        if page.next_cursor is not None:
            following = f"{PREFIX}?limit={wanted.limit}&cursor={page.next_cursor}"
            headers["Link"] = f'<{following}>; rel="next"'
        return json_text(page.json, headers=headers)
    listing = await todos.list_all(db, caller.id, unless)
    if listing.not_modified:
        return _not_modified(listing.etag)
    if listing.json is not None:
        return json_text(listing.json, headers={**_READ, "ETag": listing.etag})
    # Too long to hold whole: streamed. The first batch is read before the status line
    # goes out, so an outage is still a clean 503 here.
    etag, pieces = await db.call(todos.stream_all, db, caller.id)
    return StreamingResponse(pieces, media_type="application/json", headers={**_READ, "ETag": etag})


@router.get("/{todo_id}")
async def get_todo(todo_id: str, request: Request) -> Response:
    caller = await current_user(request)
    found = await todos.get(database(request), caller.id, parse_todo_id(todo_id))
    if found is None:
        raise _not_found()
    unless = parse_condition(request.headers.getlist("if-none-match"))
    if unless is not None and unless.matches(found.etag, weak_comparison=True):
        return _not_modified(found.etag)
    return json_text(found.json, headers={**_READ, "ETag": found.etag})


def _if_match(request: Request) -> list[int] | None:
    """The todo versions If-Match names; None when absent or `*` (which any existing
    todo matches, so the write is unconditional)."""
    condition = parse_condition(request.headers.getlist("if-match"))
    if condition is None or condition.any:
        return None
    return condition.item_versions(weak_comparison=False)


@router.patch("/{todo_id}")
async def update_todo(todo_id: str, request: Request) -> Response:
    body = await json_body(request)
    caller = await current_user(request)
    parsed = parse_request(TodoUpdate, body, todo_id)
    assert parsed.todo_id is not None
    db = database(request)
    todo = await todos.patch(db, caller.id, parsed.todo_id, parsed.body, _if_match(request))
    if todo is None:
        raise _not_found()
    return json_text(todo.json, headers={"ETag": todo.etag})


@router.delete("/{todo_id}", status_code=204)
async def delete_todo(todo_id: str, request: Request) -> Response:
    caller = await current_user(request)
    todo = parse_todo_id(todo_id)
    if not await todos.remove(database(request), caller.id, todo, _if_match(request)):
        raise _not_found()
    return Response(status_code=204)
