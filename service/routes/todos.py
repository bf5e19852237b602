"""/api/v1/todos: each handler checks the body's type, then who is calling, then the
input, then asks the data layer, in the contract's order of checks."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response, StreamingResponse

from service import todos
from service.errors import NotFound, UnsupportedMediaType
from service.identity import CurrentUser
from service.models import TodoCreate, TodoUpdate
from service.parsing import parse_request, parse_todo_id
from service.routes.responses import Db, json_text

PREFIX = "/api/v1/todos"
router = APIRouter(prefix=PREFIX)


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


JsonBody = Annotated[bytes, Depends(json_body)]


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _not_found() -> NotFound:
    return NotFound("No todo with this id exists for this user.")


@router.post("", status_code=201)
async def create_todo(body: JsonBody, user: CurrentUser, db: Db) -> Response:
    data, _ = parse_request(TodoCreate, body)
    todo_id, todo = await db.call(todos.create, db, user, data)
    return json_text(todo, 201, {"Location": f"{PREFIX}/{todo_id}"})


@router.get("")
async def list_todos(user: CurrentUser, db: Db) -> Response:
    body = await db.call(todos.list_all, db, user)
    if body is not None:
        return json_text(body)
    # Too long to hold whole: streamed. The first piece opens the cursor, so an outage
    # is still a clean 503 here, before the status line goes out.
    pieces = todos.stream_all(db, user)
    first = await db.call(next, pieces)
    return StreamingResponse(_chain(first, pieces), media_type="application/json")


@router.get("/{todo_id}")
async def get_todo(todo_id: str, user: CurrentUser, db: Db) -> Response:
    todo = await db.call(todos.get, db, user, parse_todo_id(todo_id))
    if todo is None:
        raise _not_found()
    return json_text(todo)


@router.patch("/{todo_id}")
async def update_todo(todo_id: str, body: JsonBody, user: CurrentUser, db: Db) -> Response:
    changes, parsed_id = parse_request(TodoUpdate, body, todo_id)
    assert parsed_id is not None
    todo = await db.call(todos.patch, db, user, parsed_id, changes)
    if todo is None:
        raise _not_found()
    return json_text(todo)


@router.delete("/{todo_id}", status_code=204)
async def delete_todo(todo_id: str, user: CurrentUser, db: Db) -> Response:
    if not await db.call(todos.remove, db, user, parse_todo_id(todo_id)):
        raise _not_found()
    return Response(status_code=204)
