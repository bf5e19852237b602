"""Two `todo-service serve` processes on one database (through PgBouncer in the pooled
profile) are one service: nothing that matters lives in a process. A retry that lands
on the other process replays, an ETag from one is honoured by the other, a cursor from
one continues on the other, and a replay survives a restart."""

import uuid

import one_off
import pytest
from api import TODOS, as_user, todo_url
from served import Serve

from service.db import Database


@pytest.mark.req("FR-121", "FR-113", "FR-112", "FR-131", "FR-007")
def test_two_processes_on_one_database_behave_as_one_service(
    postgres_url: str, database: Database, serve: Serve
) -> None:
    one, other = serve(postgres_url), serve(postgres_url)
    one.wait_ready()
    other.wait_ready()
    user = as_user(str(uuid.uuid4()))
    key = {"Idempotency-Key": str(uuid.uuid4())}

    first = one_off.post(f"{one.base}{TODOS}", json={"title": "once"}, headers={**user, **key})
    assert first.status_code == 201
    retried = one_off.post(f"{other.base}{TODOS}", json={"title": "once"}, headers={**user, **key})
    assert retried.status_code == 201
    assert retried.headers["idempotent-replayed"] == "true"
    assert retried.content == first.content

    path = todo_url(first.json()["id"])
    etag = one_off.get(f"{one.base}{path}", headers=user).headers["etag"]
    assert (
        one_off.get(f"{other.base}{path}", headers={**user, "If-None-Match": etag}).status_code
        == 304
    )
    changed = one_off.patch(
        f"{other.base}{path}", json={"title": "twice"}, headers={**user, "If-Match": etag}
    )
    assert changed.status_code == 200
    stale = one_off.patch(
        f"{one.base}{path}", json={"title": "lost"}, headers={**user, "If-Match": etag}
    )
    assert stale.status_code == 412

    list_etag = one_off.get(f"{other.base}{TODOS}", headers=user).headers["etag"]
    assert (
        one_off.get(f"{one.base}{TODOS}", headers={**user, "If-None-Match": list_etag}).status_code
        == 304
    )

    for n in range(5):
        one_off.post(f"{one.base}{TODOS}", json={"title": f"t{n}"}, headers=user)
    page = one_off.get(f"{one.base}{TODOS}?limit=4", headers=user).json()
    rest = one_off.get(f"{other.base}{TODOS}?limit=4&cursor={page['next_cursor']}", headers=user)
    assert rest.status_code == 200
    whole = one_off.get(f"{other.base}{TODOS}", headers=user).json()["items"]
    assert page["items"] + rest.json()["items"] == whole

    one.stop()
    again = serve(postgres_url)
    again.wait_ready()
    after_restart = one_off.post(
        f"{again.base}{TODOS}", json={"title": "once"}, headers={**user, **key}
    )
    assert after_restart.headers["idempotent-replayed"] == "true"
    assert after_restart.content == first.content
