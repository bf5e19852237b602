"""Metrics and traces (FR-161 to FR-163), checked with what an operator runs: a real
Prometheus scraping a two-worker `serve`, `promtool check metrics` on what it serves,
and an OTLP receiver getting the spans; and both off by default, where neither library
is so much as imported."""

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from otlp_receiver import CLIENT, SERVER, OtlpReceiver, attributes
from ports import free_port
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from prometheus_server import PrometheusServer
from served import Serve, ServedService
from waits import until
from worker_probe import loaded_by_a_worker

from service.db import Database

TODOS = "/api/v1/todos"
A_TODO = "/api/v1/todos/{todo_id}"
UUID_IN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-", re.IGNORECASE)


def _scrape(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called `name`, by their labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _total(text: str, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for k, v in _samples(text, name).items() if wanted <= set(k))


def _promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "Debian's prometheus package has promtool (nox -s tests installs it)"
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _requests_by_worker(directory: Path) -> dict[int, float]:
    """How many requests each process has counted, read from its own file."""
    counted = {}
    for file in directory.glob("histogram_*.db"):
        pid = int(file.stem.rsplit("_", 1)[1])
        families = MultiProcessCollector.merge([str(file)], accumulate=True)
        counted[pid] = sum(
            s.value
            for family in families
            for s in family.samples
            if s.name == "http_server_request_duration_seconds_count"
        )
    return {pid: n for pid, n in counted.items() if n}


@pytest.fixture
def metered(
    serve: Serve, postgres_url: str, database: Database, tmp_path: Path
) -> tuple[ServedService, int, Path]:
    """`serve --workers 2` with metrics on a port of their own."""
    port, directory = free_port(), tmp_path / "metrics"
    service = serve(
        postgres_url,
        workers=2,
        extra_env={"TODO_METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(directory)},
    )
    service.wait_ready(in_a_row=3)
    return service, port, directory


@pytest.mark.req("FR-161")
def test_a_real_prometheus_counts_every_request_of_both_workers_by_route_and_status(
    metered: tuple[ServedService, int, Path], tmp_path: Path
) -> None:
    service, port, directory = metered
    prometheus = PrometheusServer(tmp_path / "prometheus", [f"127.0.0.1:{port}"])
    user = {"X-User-ID": str(uuid.uuid4())}
    sent: Counter[tuple[str, str, str]] = Counter()

    def send(method: str, path: str, route: str, **options: Any) -> httpx.Response:
        # A connection per request, so that either worker may take it.
        answer = httpx.request(method, service.base + path, headers=user, **options)
        sent[(method, route, str(answer.status_code))] += 1
        return answer

    try:
        made = [
            send("POST", TODOS, TODOS, json={"title": f"todo {n}"}).json()["id"] for n in range(5)
        ]
        for todo in made[:3]:
            send("GET", f"{TODOS}/{todo}", A_TODO)
        for _ in range(3):
            send("GET", f"{TODOS}/{uuid.uuid4()}", A_TODO)
        send("GET", f"{TODOS}/not-an-id", A_TODO)
        send("DELETE", f"{TODOS}/{made[0]}", A_TODO)
        for _ in range(300):
            if len(_requests_by_worker(directory)) >= 2:
                break
            send("GET", TODOS, TODOS)
        expected = dict(sent)
        query = (
            "sum by (http_request_method, http_route, http_response_status_code)"
            f' (http_server_request_duration_seconds_count{{http_route=~"{TODOS}.*"}})'
        )

        def scraped() -> dict[tuple[str, str, str], int]:
            return {
                (
                    r["metric"]["http_request_method"],
                    r["metric"]["http_route"],
                    r["metric"]["http_response_status_code"],
                ): round(float(r["value"][1]))
                for r in prometheus.query(query)
            }

        until(lambda: scraped() == expected, 30, "Prometheus to scrape what was sent", every=0.5)
        seen = scraped()
    finally:
        prometheus.stop()
    assert seen == expected, "what Prometheus scraped is not what was sent"
    by_worker = _requests_by_worker(directory)
    assert len(by_worker) == 2, f"requests counted by {len(by_worker)} process(es), not both"
    text = _scrape(port)
    everything = _total(text, "http_server_request_duration_seconds_count")
    assert everything == sum(by_worker.values()), "the listener does not sum every worker"
    _promtool_check(text)
    assert httpx.get(f"{service.base}/metrics").status_code == 404, "the API port serves metrics"


_FORKS_AND_COUNTS = """
import os
from service import metrics
metrics.QUOTA_REFUSALS.inc()
child = os.fork()
if child == 0:
    metrics.QUOTA_REFUSALS.inc(2)
    os._exit(0)
os.waitpid(child, 0)
metrics.QUOTA_REFUSALS.inc()
print(os.getpid(), child)
"""


@pytest.mark.req("FR-161")
def test_a_forked_process_counts_into_a_file_of_its_own(tmp_path: Path) -> None:
    """The metrics know their process without asking at every write; a fork is told."""
    ran = subprocess.run(
        [sys.executable, "-c", _FORKS_AND_COUNTS],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    parent, child = ran.stdout.split()
    counted = {}
    for pid in (parent, child):
        families = MultiProcessCollector.merge([str(tmp_path / f"counter_{pid}.db")])
        [total] = [
            s.value
            for family in families
            for s in family.samples
            if s.name == "todo_quota_refusals_total"
        ]
        counted[pid] = total
    assert counted == {parent: 2, child: 2}


@pytest.mark.req("FR-161", "FR-151", "FR-152")
def test_the_pool_statements_and_refusals_are_counted_without_a_user_in_a_label(
    serve: Serve, postgres_url: str, database: Database
) -> None:
    port = free_port()
    service = serve(
        postgres_url,
        extra_env={
            "TODO_METRICS_PORT": str(port),
            "TODO_MAX_TODOS_PER_USER": "1",
            "TODO_RATE_LIMIT": "4/60",
        },
    )
    service.wait_ready()
    user = {"X-User-ID": str(uuid.uuid4())}
    assert httpx.post(f"{service.base}{TODOS}", json={"title": "one"}, headers=user).is_success
    over = httpx.post(f"{service.base}{TODOS}", json={"title": "two"}, headers=user)
    assert over.status_code == 409
    statuses = [httpx.get(f"{service.base}{TODOS}", headers=user).status_code for _ in range(4)]
    assert 429 in statuses

    text = _scrape(port)
    _promtool_check(text)
    assert _total(text, "todo_quota_refusals_total") == 1
    assert _total(text, "todo_rate_limit_refusals_total") == statuses.count(429)
    assert _total(text, "db_client_connection_wait_time_seconds_count") >= 6
    named = {
        dict(k)["db_operation_name"]
        for k in _samples(text, "db_client_operation_duration_seconds_count")
    }
    assert {"todos.CREATE", "todos.LIST"} <= named, named
    assert _total(text, "http_server_active_requests") == 0
    for line in text.splitlines():
        assert line.startswith("#") or not UUID_IN.search(line), line
        assert user["X-User-ID"] not in line


@pytest.mark.req("FR-161")
def test_token_checks_key_fetches_and_a_key_server_503_are_counted_by_outcome(
    serve: Serve, postgres_url: str, database: Database, better_auth: Any
) -> None:
    port = free_port()
    common = {"TODO_AUTH_MODE": "jwt", "TODO_METRICS_PORT": str(port)}
    trusting = serve(
        postgres_url,
        extra_env={
            **common,
            "TODO_JWT_JWKS_URL": better_auth.jwks_url,
            "TODO_JWT_ISSUER": better_auth.base,
            "TODO_JWT_AUDIENCE": better_auth.base,
        },
    )
    trusting.wait_ready()
    token = better_auth.sign_up().token
    bearer = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{trusting.base}{TODOS}", headers=bearer).status_code == 200
    assert httpx.get(f"{trusting.base}{TODOS}").status_code == 401
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert (
        httpx.get(
            f"{trusting.base}{TODOS}", headers={"Authorization": f"Bearer {tampered}"}
        ).status_code
        == 401
    )
    text = _scrape(port)
    assert _total(text, "todo_token_verifications_total", outcome="valid") == 1
    assert _total(text, "todo_token_verifications_total", outcome="missing_token") == 1
    assert _total(text, "todo_token_verifications_total", outcome="invalid_token") == 1
    assert _total(text, "todo_key_fetches_total", outcome="ok") == 1
    assert token not in text and tampered not in text
    trusting.stop()

    nobody = free_port()
    stranded = serve(
        postgres_url,
        extra_env={**common, "TODO_JWT_JWKS_URL": f"http://127.0.0.1:{nobody}/jwks"},
    )
    stranded.wait_ready()
    answer = httpx.get(f"{stranded.base}{TODOS}", headers=bearer)
    assert answer.status_code == 503
    text = _scrape(port)
    assert _total(text, "todo_unavailable_responses_total", cause="key_server") == 1
    assert _total(text, "todo_key_fetches_total", outcome="failed") == 1
    assert _total(text, "todo_token_verifications_total", outcome="service_unavailable") == 1


# -- traces -----------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    found = OtlpReceiver()
    yield found
    found.close()


def _traced(serve: Serve, url: str, receiver: OtlpReceiver, **env: str) -> ServedService:
    service = serve(
        url,
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            **env,
        },
    )
    service.wait_ready()
    return service


@pytest.mark.req("FR-162")
def test_a_request_is_one_server_span_continuing_its_traceparent_with_its_statements_under_it(
    serve: Serve, postgres_url: str, database: Database, receiver: OtlpReceiver
) -> None:
    service = _traced(serve, postgres_url, receiver)
    user = str(uuid.uuid4())
    title = f"a title that is a value {uuid.uuid4()}"
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    created = httpx.post(
        f"{service.base}{TODOS}",
        json={"title": title},
        headers={"X-User-ID": user, "traceparent": f"00-{trace_id}-{parent_id}-01"},
    )
    assert created.status_code == 201
    todo = created.json()["id"]

    spans = receiver.wait_for(
        lambda got: (
            any(s.trace_id.hex() == trace_id and s.kind == SERVER for s in got)
            and any(s.trace_id.hex() == trace_id and s.kind == CLIENT for s in got)
        )
    )
    mine = [s for s in spans if s.trace_id.hex() == trace_id]
    [server] = [s for s in mine if s.kind == SERVER]
    assert server.parent_span_id.hex() == parent_id, "the incoming traceparent is not continued"
    assert server.name == f"POST {TODOS}"
    said = attributes(server)
    assert said["http.route"] == TODOS and said["http.response.status_code"] == 201
    statements = [s for s in mine if s.kind == CLIENT]
    assert statements and all(s.parent_span_id == server.span_id for s in statements)
    texts = [attributes(s)["db.query.text"] for s in statements]
    assert any("INSERT INTO todos" in t for t in texts), texts
    for span in mine:
        shown = json.dumps({**attributes(span), "name": span.name})
        for value in (title, user, todo):
            assert value not in shown, f"a statement's value in span {span.name}: {shown[:300]}"

    logged = [
        json.loads(line)
        for line in service.output.splitlines()
        if line.startswith("{") and '"message":"request"' in line
    ]
    assert any(line.get("trace_id") == trace_id and line["method"] == "POST" for line in logged), (
        "the request's log line does not carry its trace id"
    )


@pytest.mark.req("FR-163", "FR-162")
def test_a_tenth_sampled_traces_about_a_tenth_of_the_requests(
    serve: Serve, postgres_url: str, database: Database, receiver: OtlpReceiver
) -> None:
    service = _traced(
        serve,
        postgres_url,
        receiver,
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0.1",
    )
    user = {"X-User-ID": str(uuid.uuid4())}
    with httpx.Client(base_url=service.base, headers=user) as client:
        for _ in range(400):
            assert client.get(TODOS).status_code == 200
    service.stop()  # flushes what is held
    traced = [s for s in receiver.received() if s.kind == SERVER and s.name == f"GET {TODOS}"]
    # Binomial(400, 0.1): 40 expected, and 15 or 70 are more than four deviations out.
    assert 15 <= len(traced) <= 70, f"{len(traced)} of 400 requests traced at a 10% sample"


# -- off ---------------------------------------------------------------------------------

# FastAPI itself (0.165) depends on the OpenTelemetry API and imports it, a no-op until a
# provider is set; what tracing would add is the SDK and the exporter.
LIBRARIES = ("prometheus_client", "opentelemetry.sdk", "opentelemetry.exporter")


def _loaded_by_a_worker(url: str, tmp_path: Path, **env: str) -> list[str]:
    return loaded_by_a_worker(url, tmp_path, LIBRARIES, **env)


@pytest.mark.req("FR-161", "FR-162", "FR-163")
def test_off_by_default_a_worker_imports_neither_library(
    postgres_url: str, database: Database, tmp_path: Path, receiver: OtlpReceiver
) -> None:
    assert _loaded_by_a_worker(postgres_url, tmp_path) == []
    metrics_on = {
        "TODO_METRICS_PORT": str(free_port()),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    (tmp_path / "metrics").mkdir()
    assert _loaded_by_a_worker(postgres_url, tmp_path, **metrics_on) == ["prometheus_client"]
    tracing_on = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    tracing = ["opentelemetry.sdk", "opentelemetry.exporter"]
    assert _loaded_by_a_worker(postgres_url, tmp_path, **tracing_on) == tracing
