"""Loaded by schemathesis in the kit's fuzz run (SCHEMATHESIS_HOOKS). Some inputs are
well formed by the schema yet valid only as the target handed them out, which no schema
can say. In a positive case:
- an Idempotency-Key is made unique: hypothesis draws small values, so two unrelated
  cases would otherwise share a key, and the second would rightly be a replay or 422;
- a page `cursor` is kept only if the target handed it out (a stateful link passes on
  `next_cursor`) and a `limit` comes with it, as the contract's prose asks: a made-up
  one, or one alone, is rightly 422;
- a title carries the run's mark, as every todo the kit makes does (when it still fits).
Negative cases keep whatever was drawn."""

import json
import os
import uuid
from typing import Any

import schemathesis
from schemathesis import GenerationMode

MARK = os.environ.get("TODO_CONFORMANCE_MARK", "")
TITLE_MAX = 255
_handed_out: set[str] = set()


def _positive(case: schemathesis.Case[Any]) -> bool:
    return case.meta is None or case.meta.generation.mode is GenerationMode.POSITIVE


@schemathesis.hook
def before_call(ctx: Any, case: schemathesis.Case[Any], **kwargs: Any) -> None:
    if not _positive(case):
        return
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
    if case.query and (case.query.get("cursor") not in _handed_out or "limit" not in case.query):
        case.query.pop("cursor", None)
    body = case.body
    if not isinstance(body, dict):
        return
    title = body.get("title")
    if isinstance(title, str) and MARK and title.strip() and not title.startswith(MARK):
        marked = f"{MARK} {title}"
        if len(marked) <= TITLE_MAX:
            body["title"] = marked


@schemathesis.hook
def after_call(ctx: Any, case: schemathesis.Case[Any], response: Any) -> None:
    if case.operation.label != "GET /api/v1/todos" or response.status_code != 200:
        return
    cursor = json.loads(response.text).get("next_cursor")
    if isinstance(cursor, str):
        _handed_out.add(cursor)
