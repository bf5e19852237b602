"""Loaded by schemathesis in the kit's fuzz run (SCHEMATHESIS_HOOKS). Some inputs are
well formed by the schema yet valid only as the target handed them out, which no schema
can say. In a positive case:
- an Idempotency-Key is made unique: hypothesis draws small values, so two unrelated
  cases would otherwise share a key, and the second would rightly be a replay or 422;
- a page `cursor` is kept only if the target handed it out (a stateful link passes on
  `next_cursor`) for that path, and under /api/v1 a `limit` comes with it, as the
  contract's prose asks: a made-up one, or one alone, is rightly 422; under /api/v2 it
  comes with the filters and sort it was issued for, which are put back as they were;
- a title carries the run's mark, as every todo the kit makes does (when it still fits).
Negative cases keep whatever was drawn, but for one thing: a bulk write (PATCH or DELETE
/api/v2/todos), positive or not, filters on the run's own tag and never asks for `all`,
so that it can only ever reach the todos this run made (and, positive, it has the filter
the contract's prose asks for: with none it is rightly 422)."""

import json
import os
import uuid
from typing import Any

import schemathesis
from schemathesis import GenerationMode

MARK = os.environ.get("TODO_CONFORMANCE_MARK", "")
RUN_TAG = os.environ["TODO_CONFORMANCE_RUN_TAG"]
TITLE_MAX = 255
V1 = "/api/v1/todos"
# The bulk writes, by method and path: the coverage phase also sends a path's undeclared
# methods under its GET operation (and its query), so a contract that declares no bulk
# write does not keep one from being sent to a deployment that has them.
BULK = {("PATCH", "/api/v2/todos"), ("DELETE", "/api/v2/todos")}
# A tag filter's most tags (TagFilter's maxItems): the run's takes one of them.
TAGS_MAX = 10
# Each cursor handed out: the path it came from and the query it was issued for.
_handed_out: dict[str, tuple[str, dict[str, Any]]] = {}


def _positive(case: schemathesis.Case[Any]) -> bool:
    return case.meta is None or case.meta.generation.mode is GenerationMode.POSITIVE


@schemathesis.hook
def before_call(ctx: Any, case: schemathesis.Case[Any], **kwargs: Any) -> None:
    if (case.method.upper(), case.operation.path) in BULK:
        _own_run_only(case)
    if not _positive(case):
        return
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
    if case.query and "cursor" in case.query:
        _cursor(case)
    body = case.body
    if not isinstance(body, dict):
        return
    title = body.get("title")
    if isinstance(title, str) and MARK and title.strip() and not title.startswith(MARK):
        marked = f"{MARK} {title}"
        if len(marked) <= TITLE_MAX:
            body["title"] = marked


def _own_run_only(case: schemathesis.Case[Any]) -> None:
    """The run's tag among the tags a bulk write filters on (a todo must carry every tag
    given), whatever else was drawn; `all` goes."""
    query = dict(case.query or {})
    query.pop("all", None)
    drawn = query.get("tag", [])
    tags = drawn if isinstance(drawn, list) else [drawn]
    query["tag"] = [*tags[: TAGS_MAX - 1], RUN_TAG]
    case.query = query


def _cursor(case: schemathesis.Case[Any]) -> None:
    query = case.query
    cursor = query["cursor"]
    path, issued = _handed_out.get(cursor, ("", {}))
    if path != case.operation.path or (path == V1 and "limit" not in query):
        query.pop("cursor")
    elif path != V1:
        limit = query.get("limit")
        query.clear()
        query.update(issued, cursor=cursor, **({} if limit is None else {"limit": limit}))


@schemathesis.hook
def after_call(ctx: Any, case: schemathesis.Case[Any], response: Any) -> None:
    if case.operation.label not in ("GET /api/v1/todos", "GET /api/v2/todos"):
        return
    if response.status_code != 200:
        return
    cursor = json.loads(response.text).get("next_cursor")
    if isinstance(cursor, str):
        issued = {k: v for k, v in (case.query or {}).items() if k not in ("cursor", "limit")}
        _handed_out[cursor] = (case.operation.path, issued)
