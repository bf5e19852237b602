"""PATCH and DELETE /api/v2/todos: every todo of the caller that meets the filters,
changed or deleted at once (FR-211 to FR-213), in the contract's order of checks: the
body's type, who is calling, then the query, the headers and the body, all in one
422."""

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.errors import IdempotencyKeyReused
from service.identity import current_user
from service.models import TodoBulkUpdate
from service.parsing import json_body, parse_idempotency_key, parse_request
from service.queries import bulk_filters
from service.routes.etags import parse_condition
from service.store import Caller, bulk
from service.store.keys import Reused
from service.store.lists import Filters

router = APIRouter()
PATH = "/api/v2/todos"


def _if_match(request: Request, caller: Caller) -> list[int] | None:
    """The list versions If-Match names; None when absent or `*` (the list always
    exists, so the write is unconditional)."""
    condition = parse_condition(request.headers.getlist("if-match"), "If-Match")
    if condition is None or condition.any:
        return None
    return condition.list_versions(caller.id)


async def _written(
    request: Request,
    caller: Caller,
    filters: Filters,
    changes: TodoBulkUpdate | None,
    key: str | None,
) -> Response:
    written = await bulk.write(
        request.app.state.db, caller.id, filters, changes, _if_match(request, caller), key
    )
    if isinstance(written, Reused):
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for a different request; use a new key."
        )
    headers = {"Idempotent-Replayed": "true"} if written.replayed else {}
    return Response(written.json, 200, headers, "application/json")


async def update_todos(request: Request) -> Response:
    body = await json_body(request)
    caller = await current_user(request)
    filters, refused = bulk_filters(request.query_params)
    parsed = parse_request(
        TodoBulkUpdate,
        body,
        idempotency_key=request.headers.getlist("idempotency-key"),
        refused=refused,
    )
    return await _written(request, caller, filters, parsed.body, parsed.idempotency_key)


async def delete_todos(request: Request) -> Response:
    caller = await current_user(request)
    filters, refused = bulk_filters(request.query_params)
    key = parse_idempotency_key(request.headers.getlist("idempotency-key"), refused)
    return await _written(request, caller, filters, None, key)


router.add_api_route(PATH, update_todos, methods=["PATCH"])
router.add_api_route(PATH, delete_todos, methods=["DELETE"])
