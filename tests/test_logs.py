"""Operability: one JSON line per request that ties it to its request id, and not one
line of the whole run that gives away how to reach the database."""

import json
import uuid

import one_off
import pytest
from api import TODOS, as_user, todo_url
from run_logs import RunLogs
from served import Serve

from service.db import Database


@pytest.mark.req("FR-006")
def test_each_request_logs_one_json_line_with_id_method_route_status_and_duration(
    postgres_url: str, database: Database, serve: Serve
) -> None:
    service = serve(postgres_url)
    service.wait_ready()
    missing = todo_url(uuid.uuid4())
    answer = one_off.get(
        f"{service.base}{missing}",
        headers={**as_user(str(uuid.uuid4())), "X-Request-ID": "trace-4711"},
    )
    assert answer.headers["x-request-id"] == "trace-4711"
    generated = one_off.get(f"{service.base}{TODOS}", headers=as_user(str(uuid.uuid4())))
    output = service.stop()

    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert lines, output
    [traced] = [line for line in lines if line.get("request_id") == "trace-4711"]
    assert traced["logger"] == "service.access"
    assert (traced["method"], traced["route"], traced["status"]) == (
        "GET",
        "/api/v1/todos/{todo_id}",
        404,
    )
    assert isinstance(traced["duration_ms"], float) and traced["duration_ms"] > 0
    [listed] = [
        line for line in lines if line.get("request_id") == generated.headers["x-request-id"]
    ]
    assert (listed["route"], listed["status"]) == ("/api/v1/todos", 200)


def test_the_scan_finds_a_planted_secret() -> None:
    logs = RunLogs()
    logs.database_url("postgresql://owner:s3cr3t-pw@db.example:5432/app")
    logs.add("planted", '{"message": "connecting with s3cr3t-pw"}')
    logs.add("clean", '{"message": "connecting to db.example"}')
    assert logs.leaks() == [("planted", "s3cr...")]


@pytest.mark.audit_last
@pytest.mark.req("FR-006")
def test_no_log_line_of_the_whole_run_holds_the_database_password_or_url(
    run_logs: RunLogs,
) -> None:
    lines = sum(text.count("\n") + 1 for _, text in run_logs.texts)
    assert lines > 200, "the run logged too little for the scan to mean anything"
    assert run_logs.secrets
    assert run_logs.leaks() == []
