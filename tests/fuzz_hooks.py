"""Schemathesis hooks for every fuzz run, in-process (imported) and served (the CLI
loads this module through SCHEMATHESIS_HOOKS).

Some inputs are well formed by the schema yet valid only as the service handed them
out, which no schema can say. In a positive case:
- an Idempotency-Key is made unique. Hypothesis draws small values, so two unrelated
  cases would otherwise share a key: the second is then, rightly, a replay of the first
  (201 naming a todo that may be deleted since) or a 422 for a different body;
- a page `cursor` is kept only if the service handed it out (a stateful link passes on
  `next_cursor`); a made-up one is rightly 422 (FR-133).
Negative cases keep whatever was drawn."""

import json
import uuid
from typing import Any

import schemathesis
from schemathesis import GenerationMode

IDEMPOTENCY_KEY = "Idempotency-Key"
_handed_out: set[str] = set()


def _positive(case: schemathesis.Case[Any]) -> bool:
    return case.meta is None or case.meta.generation.mode is GenerationMode.POSITIVE


@schemathesis.hook
def before_call(ctx: Any, case: schemathesis.Case[Any], **kwargs: Any) -> None:
    if not _positive(case):
        return
    if case.headers and IDEMPOTENCY_KEY in case.headers:
        case.headers[IDEMPOTENCY_KEY] = str(uuid.uuid4())
    if case.query and case.query.get("cursor") not in _handed_out:
        case.query.pop("cursor", None)


@schemathesis.hook
def after_call(ctx: Any, case: schemathesis.Case[Any], response: Any) -> None:
    if case.operation.label != "GET /api/v1/todos" or response.status_code != 200:
        return
    cursor = json.loads(response.text).get("next_cursor")
    if isinstance(cursor, str):
        _handed_out.add(cursor)
