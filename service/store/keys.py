"""Creates under an Idempotency-Key: the first use creates, a retry of the same request
within 24 hours gets the first answer again, another request under the same key is
refused. Keys are the caller's own."""

import hashlib
import uuid
from dataclasses import dataclass
from itertools import count

import orjson

from service.db import Database
from service.models import TodoCreate, TodoCreateV2
from service.store import Caller, Created, View, new_todo

# The key is claimed first, with the answer the todo will have, and the todo (its id
# chosen by the service) is written only if the claim succeeded. A duplicate running at
# the same time waits on the key's row and then claims nothing, so two todos can never
# come of one key. The answer is the todo as it will be stored, as the asking view's row
# type, so that it is spelled exactly as the store spells the stored row (a new todo is
# open: no completed_at).
CLAIM = """\
WITH claim AS (
    INSERT INTO idempotency_keys (user_id, key, fingerprint, todo_id, body)
    VALUES (
        %(user_id)s, %(key)s, %(fingerprint)s, %(todo_id)s,
        CASE WHEN %(v1)s
            THEN row_to_json((%(todo_id)s, %(user_id)s, %(title)s, %(description)s,
                              false, now(), now())::todo_v1)
            ELSE row_to_json((%(todo_id)s, %(user_id)s, %(title)s, %(description)s,
                              false, now(), now(), %(priority)s, %(due_at)s,
                              %(tags)s::text[], NULL)::todo_v2)
        END::text
    )
    ON CONFLICT (user_id, key) DO NOTHING
    RETURNING todo_id, body
),
new_user AS (
    INSERT INTO users (id, issuer, subject)
    VALUES (%(user_id)s, %(issuer)s, %(subject)s)
    ON CONFLICT DO NOTHING
),
created AS (
    INSERT INTO todos (id, user_id, title, description, priority, due_at, tags,
                       title_folded, description_folded)
    SELECT todo_id, %(user_id)s, %(title)s, %(description)s, %(priority)s, %(due_at)s,
           %(tags)s::text[], %(title_folded)s, %(description_folded)s
    FROM claim
)
SELECT body, (extract(epoch FROM now()) * 1000000)::bigint, todo_id FROM claim"""

# A key that claimed nothing was used before: the answer it was given then, and the
# request it was given for. An expired key is deleted here instead, so nothing comes
# back and the next claim of that key creates afresh. (Releasing it here rather than
# taking it over in the claim keeps every claim a plain DO NOTHING.)
REPLAY = """\
WITH released AS (
    DELETE FROM idempotency_keys
    WHERE user_id = %(user_id)s AND key = %(key)s AND created_at <= now() - interval '24 hours'
)
SELECT todo_id, body, (extract(epoch FROM created_at) * 1000000)::bigint, fingerprint
FROM idempotency_keys
WHERE user_id = %(user_id)s AND key = %(key)s AND created_at > now() - interval '24 hours'"""

# Every SWEEP_EVERY-th keyed create of a process (the first included) first deletes up
# to 256 expired keys of any user (migration 0004's function, which runs as the owner):
# four for each key added, so the table stays bounded with no job, while the others
# skip the sweep's cost and are sent without it. A statement of its own in the same
# round trip and transaction, so the claim sees the keys it swept as gone.
SWEEP = "SELECT sweep_expired_idempotency_keys(256);\n"
SWEEP_EVERY = 64
_keyed_creates = count()


@dataclass(frozen=True, slots=True)
class Reused:
    """The key was used before for a different request."""


def _fingerprint(data: TodoCreate | TodoCreateV2) -> bytes:
    """The request as the service understood it: the same todo asked for twice is the
    same request however its JSON was spelled. Under 2.0 it is a request of its own
    (its answer shows more), so a key used under one version is reused under the other."""
    if not isinstance(data, TodoCreateV2):
        return hashlib.sha256(orjson.dumps([data.title, data.description])).digest()
    asked = [View.V2.value, data.title, data.description, data.priority, data.due_at, data.tags]
    return hashlib.sha256(orjson.dumps(asked)).digest()


async def create_once(
    db: Database,
    caller: Caller,
    data: TodoCreate | TodoCreateV2,
    key: str,
) -> Created | Reused:
    fingerprint = _fingerprint(data)
    params = {
        **new_todo(caller, data),
        "key": key,
        "fingerprint": fingerprint,
        "todo_id": str(uuid.uuid4()),
    }
    claim = SWEEP + CLAIM if next(_keyed_creates) % SWEEP_EVERY == 0 else CLAIM
    # Claiming nothing means the key was used: its answer is read in a new snapshot,
    # which sees a use that committed while the claim waited on it. Should that use have
    # expired, it is released (or was swept) meanwhile and the key is free again: one
    # more try.
    for _ in range(2):
        claimed = await db.fetch(caller.id, claim, params, creates=True)
        if claimed:
            body, version, todo_id = claimed[0]
            return Created(body, version, str(todo_id))
        earlier = await db.fetch(caller.id, REPLAY, params)
        if earlier:
            break
    else:
        # The key's earlier use came and went twice while this one waited on it.
        raise db.unavailable(cause="timeout")
    earlier_id, earlier_body, version, earlier_print = earlier[0]
    if bytes(earlier_print) != fingerprint:
        return Reused()
    return Created(earlier_body, version, str(earlier_id), replayed=True)
