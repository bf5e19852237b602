"""What an operator runs (FR-164 to FR-166): deploy/'s rules and dashboard, through
promtool and through a real Prometheus scraping a two-worker `serve` under a known load;
the CPU, memory, pool and build metrics, against what `ps` and the build say; and the
telemetry settings, checked at start, with a collector that is down costing a line a
minute and never a slow stop."""

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import tomllib
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import one_off
import psutil
import pytest
import sqlalchemy
from alerting import heading_anchors
from conftest import read_yaml
from kit_jobs import Kits, Scheduled, job
from ports import free_port
from prometheus_server import PrometheusServer
from pydantic import ValidationError
from served import EXECUTABLE, Serve, ServedService
from waits import until

from service.db import Database, sqlalchemy_url
from service.settings import Settings, settings_problems

REPO = Path(__file__).resolve().parents[1]
RULES_DIR = REPO / "deploy" / "prometheus"
RULES = RULES_DIR / "rules.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboard.json"
JOB = "todo-service"
# A query before Prometheus has the series, or while it starts.
_NOT_YET = (IndexError, httpx.TransportError)
# What Grafana's $__rate_interval is, here: four of the test's one-second scrapes and more.
RATE_INTERVAL = "10s"
TODOS = "/api/v1/todos"
POOL_SIZE = 4


def _rules() -> list[dict[str, Any]]:
    return [rule for group in read_yaml(RULES)["groups"] for rule in group["rules"]]


# -- the rules and the dashboard, as files ------------------------------------------------


@pytest.mark.req("FR-164")
def test_the_rules_pass_promtool_and_every_alert_is_unit_tested_firing_and_quiet() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "Debian's prometheus package has promtool (nox -s tests installs it)"
    for command in (["check", "rules", "rules.yml"], ["test", "rules", "rules_test.yml"]):
        done = subprocess.run(
            [promtool, *command],
            cwd=RULES_DIR,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    cases = [
        case
        for test in read_yaml(RULES_DIR / "rules_test.yml")["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    assert {c["alertname"] for c in cases if c["exp_alerts"]} == alerts, "an alert never fires"
    assert {c["alertname"] for c in cases if not c["exp_alerts"]} == alerts, "one never stays quiet"


@pytest.mark.req("FR-164")
def test_every_alert_has_a_mixin_severity_a_runbook_section_and_the_dashboard() -> None:
    runbooks = heading_anchors(REPO / "docs" / "operations.md")
    uid = json.loads(DASHBOARD.read_text())["uid"]
    for rule in _rules():
        if "alert" not in rule:
            continue
        name, annotations = rule["alert"], rule["annotations"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page.endswith("/operations.md") and anchor == name.lower(), name
        assert anchor in runbooks, f"docs/operations.md has no section {name}"
        assert f"/d/{uid}?" in annotations["dashboard_url"], name
        assert JOB not in annotations["summary"], f"{name}'s summary names the job itself"


@pytest.mark.req("FR-164")
def test_a_job_of_another_name_is_one_substitution_and_the_unit_tests_still_pass(
    tmp_path: Path,
) -> None:
    """As the rules' header says: `sed -i 's/todo-service/NAME/g' rules.yml rules_test.yml`."""
    for name in ("rules.yml", "rules_test.yml"):
        (tmp_path / name).write_text((RULES_DIR / name).read_text().replace(JOB, "api-eu-1"))
    for command in (["check", "rules", "rules.yml"], ["test", "rules", "rules_test.yml"]):
        done = subprocess.run(
            ["promtool", *command],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    # Every series read from a scrape (a recording rule's name has a colon) names the job.
    renamed = read_yaml(tmp_path / "rules.yml")
    exprs = " ".join(rule["expr"] for group in renamed["groups"] for rule in group["rules"])
    scraped = [m for m in re.findall(r"([\w:]+)\{([^}]*)\}", exprs) if ":" not in m[0]]
    assert scraped and all(re.search(r'\bjob="api-eu-1(-ready)?"', m[1]) for m in scraped)


ALERTMANAGER = REPO / "deploy" / "alertmanager" / "alertmanager.yml"


def _amtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    amtool = shutil.which("amtool")
    assert amtool, "Debian's prometheus-alertmanager package has amtool (nox -s tests installs it)"
    return subprocess.run(
        [amtool, *arguments], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.req("FR-164")
@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (("severity=critical",), "pager"),
        (("severity=warning",), "tickets"),
        (("severity=info",), "chat"),
        # Whatever lacks a severity still reaches a person.
        (("alertname=Unknown",), "tickets"),
    ],
)
def test_the_alertmanager_example_routes_each_severity_to_its_receiver(
    labels: tuple[str, ...], receiver: str
) -> None:
    checked = _amtool("check-config", str(ALERTMANAGER))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    routed = _amtool(
        "config", "routes", "test", f"--config.file={ALERTMANAGER}", "alertname=Any", *labels
    )
    assert routed.returncode == 0, routed.stdout + routed.stderr
    assert routed.stdout.split() == [receiver]
    # And every alert the rules raise carries a severity the tree routes.
    severities = {r["labels"]["severity"] for r in _rules() if "alert" in r}
    assert severities == {"critical", "warning", "info"}


@pytest.mark.req("FR-164")
def test_the_blackbox_exporter_takes_the_probe_as_shipped() -> None:
    exporter = shutil.which("prometheus-blackbox-exporter")
    assert exporter, "Debian's prometheus-blackbox-exporter package (nox -s tests installs it)"
    config = REPO / "deploy" / "blackbox" / "blackbox.yml"
    done = subprocess.run(
        [exporter, "--config.check", f"--config.file={config}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "todo_ready" in read_yaml(config)["modules"]


# A string enum of Grafana's schema takes its values as JSON spells them.
_DASHBOARD_TS = """import type { Dashboard } from "@grafana/schema";
type Json<T> = T extends string ? `${T}` : T extends object ? { [K in keyof T]: Json<T[K]> } : T;
export const dashboard: Json<Dashboard> = %s;
"""


@pytest.mark.req("FR-164")
def test_the_dashboard_type_checks_against_grafanas_published_schema(tmp_path: Path) -> None:
    """@grafana/schema (npm, Grafana's own) types the dashboard JSON; tsc --strict checks
    ours against it, every panel, target and variable."""
    schema = REPO / "node_modules" / "@grafana" / "schema" / "dist" / "types" / "index.d.ts"
    tsc = REPO / "node_modules" / ".bin" / "tsc"
    assert schema.exists() and tsc.exists(), "npm ci installs @grafana/schema and typescript"
    (tmp_path / "dashboard.ts").write_text(_DASHBOARD_TS % DASHBOARD.read_text())
    options = {
        "strict": True,
        "noEmit": True,
        "target": "es2022",
        "module": "esnext",
        "moduleResolution": "bundler",
        "types": [],
        "paths": {"@grafana/schema": [str(schema)]},
    }
    config = {"compilerOptions": options, "files": ["dashboard.ts"]}
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    done = subprocess.run(
        [str(tsc), "-p", str(tmp_path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- a real Prometheus, scraping a served load ----------------------------------------------
#
# One run, in the background of the other tests (tests/kit_jobs.py): `serve --workers 2`
# as an operator runs it, with metrics, a quota, a rate limit and traces sent to a
# collector that is down; 30 s of load, through a slow database and an outage; scraped
# every second by a Prometheus that has deploy/'s rules; then SIGTERM. The tests read
# what the run saw, and ask the Prometheus, kept up until the session ends.

LOAD_SECONDS = 30


@dataclass
class Operated:
    prometheus: PrometheusServer
    statuses: Counter[int]
    # When the load started and ended, and when `ps` was read (Unix times).
    started: float
    ended: float
    read: float
    # The workers' CPU seconds by `ps` before and after the last scrape was sampled, and
    # their resident bytes.
    cpu_by_ps: tuple[float, float]
    cpu_scraped: float
    rss_by_ps: int
    rss_scraped: float
    stop_seconds: float
    output: str
    # What was in the temporary directory while serving, and after.
    temporary: tuple[list[str], list[str]]


def _admin(url: str) -> sqlalchemy.Engine:
    return sqlalchemy.create_engine(
        sqlalchemy_url(url), isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.NullPool
    )


def _slow(database_url: str, seconds: float) -> None:
    """Every statement on the todos waits `seconds`, holding its connection: a database
    that is slow to answer."""
    admin = _admin(database_url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql("BEGIN")
            conn.exec_driver_sql("LOCK TABLE todo_items IN ACCESS EXCLUSIVE MODE")
            time.sleep(seconds)
            conn.exec_driver_sql("COMMIT")
    finally:
        admin.dispose()


def _outage(server_url: str, database: str, seconds: float) -> None:
    """No connection to `database` for `seconds`: those open are ended, new ones refused."""
    admin = _admin(server_url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"ALTER DATABASE {database} WITH ALLOW_CONNECTIONS false")
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                f" WHERE datname = '{database}'"
            )
            time.sleep(seconds)
            conn.exec_driver_sql(f"ALTER DATABASE {database} WITH ALLOW_CONNECTIONS true")
    finally:
        admin.dispose()


def _load(base: str, seconds: float, statuses: Counter[int]) -> None:
    """Three users at a steady pace, each creating past the quota, listing, reading and
    missing a todo; and a fourth listing fast enough to pass the rate limit."""
    until = time.monotonic() + seconds
    lock = threading.Lock()

    def user(steady: bool) -> None:
        mine: list[str] = []
        # A timeout above the service's own bound on an answer (the statement timeout,
        # 5 s, and a second): the service answers every request, 503 at worst.
        with httpx.Client(
            base_url=base, headers={"X-User-ID": str(uuid.uuid4())}, timeout=10
        ) as client:
            while time.monotonic() < until:
                answers = [client.get(TODOS)]
                if steady:
                    answers.append(client.post(TODOS, json={"title": f"todo {len(mine)}"}))
                    if answers[-1].status_code == 201:
                        mine.append(answers[-1].json()["id"])
                    if mine:
                        answers.append(client.get(f"{TODOS}/{mine[-1]}"))
                    answers.append(client.get(f"{TODOS}/{uuid.uuid4()}"))
                with lock:
                    statuses.update(a.status_code for a in answers)
                time.sleep(0.4 if steady else 0.05)

    paces = (True, True, True, False)
    threads = [threading.Thread(target=user, args=(steady,)) for steady in paces]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _workers(service: ServedService) -> list[psutil.Process]:
    children = psutil.Process(service.process.pid).children()
    found = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
    assert len(found) == 2, [c.cmdline() for c in children]
    return found


def _cpu(workers: list[psutil.Process]) -> float:
    return float(sum(w.cpu_times().user + w.cpu_times().system for w in workers))


@job("operated", weight=45)
def _operated(kits: Kits) -> Operated:
    url = kits.database("operated")
    temporary = kits.scratch("operated-tmp")
    port = free_port()
    service = kits.serve(
        "operated",
        url,
        workers=2,
        extra_env={
            "TODO_METRICS_PORT": str(port),
            "TODO_MAX_TODOS_PER_USER": "20",
            "TODO_RATE_LIMIT": "20/2",
            "TODO_DB_POOL_SIZE": str(POOL_SIZE),
            # Nothing listens there: the collector is down.
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
            "TMPDIR": str(temporary),
        },
    )
    service.wait_ready(in_a_row=3)
    prometheus = kits.keep(
        PrometheusServer(
            kits.scratch("operated-prometheus"),
            [f"127.0.0.1:{port}"],
            job=JOB,
            rule_files=(RULES,),
        )
    )
    until(
        lambda: prometheus.query(f'up{{job="{JOB}"}} == 1'),
        30,
        "the first scrape",
        ignoring=_NOT_YET,
        every=0.25,
    )
    started = time.time()
    statuses: Counter[int] = Counter()
    loading = threading.Thread(target=_load, args=(service.base, LOAD_SECONDS, statuses))
    loading.start()
    # Two outages: rate() cannot count a series' first sample, and the 5xx series of the
    # request histogram is born with the first 503. Were every 503 of a single outage
    # scraped at once, the error ratio would read 0 (it did, once in CI); the second
    # outage's 503s are an increase of a series Prometheus has already seen. The slow
    # database comes before either: its lock goes through the profile's pooler, which
    # may still hold a connection an outage ended.
    database = urlsplit(url).path.lstrip("/")
    time.sleep(LOAD_SECONDS / 6)
    _slow(url, 2)
    time.sleep(LOAD_SECONDS / 6 - 2)
    _outage(kits.server_url, database, 1.5)
    time.sleep(LOAD_SECONDS / 3 - 1.5)
    _outage(kits.server_url, database, 1.5)
    loading.join()
    ended = time.time()
    counted = f'sum(http_server_request_duration_seconds_count{{job="{JOB}"}})'
    until(
        lambda: float(prometheus.query(counted)[0]["value"][1]) >= statuses.total(),
        30,
        "Prometheus to scrape every request sent",
        ignoring=_NOT_YET,
        every=0.25,
    )
    workers = _workers(service)
    read, before = time.time(), _cpu(workers)
    time.sleep(2.5)  # a sample by each worker, and a scrape of it
    cpu = f'sum(process_cpu_seconds_total{{job="{JOB}"}})'
    cpu_scraped = float(prometheus.query(cpu)[0]["value"][1])
    rss = f'sum(process_resident_memory_bytes{{job="{JOB}"}})'
    rss_scraped = float(prometheus.query(rss)[0]["value"][1])
    after, rss_by_ps = _cpu(workers), sum(w.memory_info().rss for w in workers)
    serving = sorted(p.name for p in temporary.iterdir())

    asked = time.monotonic()
    output = service.stop()
    stop_seconds = time.monotonic() - asked
    return Operated(
        prometheus,
        statuses,
        started,
        ended,
        read,
        (before, after),
        cpu_scraped,
        rss_by_ps,
        rss_scraped,
        stop_seconds,
        output,
        (serving, sorted(p.name for p in temporary.iterdir())),
    )


_BY = re.compile(r"\bby \(([^)]*)\)")
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_LABEL_VALUES = re.compile(r"label_values\((.+),\s*(\w+)\)")


def _queries() -> list[tuple[str, str, set[str]]]:
    """Every expression of the recording rules and the dashboard: where it is, the
    PromQL (the dashboard's variables as Grafana would fill them), and the labels what
    shows it reads."""
    found = []
    for rule in _rules():
        if "record" in rule:
            grouped = _BY.search(rule["expr"])
            labels = {x.strip() for x in grouped[1].split(",")} - {"le"} if grouped else set()
            found.append((f"rule {rule['record']}", rule["expr"], labels))
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            promql = target["expr"].replace("$job", JOB).replace("$__rate_interval", RATE_INTERVAL)
            labels = set(_LEGEND.findall(target.get("legendFormat", "")))
            found.append((f"panel {panel['title']!r} {target['refId']}", promql, labels))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            metric, label = _LABEL_VALUES.fullmatch(variable["query"]["query"]).groups()  # type: ignore[union-attr]
            found.append(
                (f"variable {variable['name']}", f"count by ({label}) ({metric})", {label})
            )
    return found


@pytest.mark.kit("operated")
@pytest.mark.req("FR-164")
def test_every_recording_rule_and_dashboard_query_returns_data_from_a_real_prometheus(
    kit_jobs: Scheduled,
) -> None:
    operated: Operated = kit_jobs["operated"]
    prometheus, at = operated.prometheus, operated.ended
    unhealthy = [r for r in prometheus.rules() if r["health"] != "ok" or r.get("lastError")]
    assert not unhealthy, f"rules Prometheus could not evaluate: {unhealthy}"
    recorded = {r["name"] for r in prometheus.rules() if r["type"] == "recording"}
    assert recorded == {rule["record"] for rule in _rules() if "record" in rule}

    for where, promql, labels in _queries():
        result = prometheus.query(promql, at)
        assert result, f"{where} returns no data: {promql}"
        for series in result:
            missing = labels - set(series["metric"])
            assert not missing, f"{where} lacks the labels {missing}: {series['metric']}"
    for record in recorded:
        assert prometheus.query(record, at), f"{record} was never recorded"

    # And what they read is what the load did.
    def value(promql: str) -> float:
        return sum(float(s["value"][1]) for s in prometheus.query(promql, at))

    sent = operated.statuses
    assert sent[503] and sent[429] and sent[409], f"the load did not do what it should: {sent}"
    assert value('job_cause:todo_unavailable_responses:rate5m{cause="unreachable"}') > 0
    assert value("job:todo_rate_limit_refusals:rate5m") > 0
    assert value("job:todo_quota_refusals:rate5m") > 0
    assert value("job:todo_http_errors:ratio_rate5m") > 0


@pytest.mark.kit("operated")
@pytest.mark.req("FR-165")
def test_cpu_memory_pool_and_build_read_right_under_load(kit_jobs: Scheduled) -> None:
    operated: Operated = kit_jobs["operated"]
    prometheus, at = operated.prometheus, operated.ended

    def value(promql: str, when: float) -> float:
        [series] = prometheus.query(promql, when)
        return float(series["value"][1])

    cpu = f'sum(process_cpu_seconds_total{{job="{JOB}"}})'
    spent = value(cpu, at) - value(cpu, operated.started)
    assert spent > 1, f"{LOAD_SECONDS} s of load on two workers shows {spent:.2f} CPU seconds"
    # Sampled after `ps` was first read, scraped before it was read again; `ps` counts
    # in hundredths of a second.
    before, after = operated.cpu_by_ps
    assert before - 0.05 <= operated.cpu_scraped <= after + 0.05, (
        operated.cpu_scraped,
        before,
        after,
    )
    by_ps, scraped = operated.rss_by_ps, operated.rss_scraped
    assert abs(scraped - by_ps) <= 0.1 * by_ps, f"RSS {scraped:.0f} scraped, {by_ps} by ps"

    def connections(state: str) -> str:
        return f'sum(db_client_connections_usage{{job="{JOB}", state="{state}"}})'

    def at_most(promql: str) -> float:
        """Its highest over the load, a second apart."""
        return value(f"max_over_time(({promql})[{LOAD_SECONDS}s:1s])", at)

    most = f'sum(db_client_connections_max{{job="{JOB}"}})'
    assert value(most, at) == 2 * POOL_SIZE
    overfull = at_most(f"{connections('used')} + {connections('idle')} - {most}")
    assert overfull <= 0, "connections in use and idle outnumber the pools"
    assert at_most(connections("used")) > 0, "no connection was ever in use under load"
    assert 0 < at_most(connections("idle")) <= 2 * POOL_SIZE

    [build] = prometheus.query(f'todo_build_info{{job="{JOB}"}}', at)
    contract = read_yaml(REPO / "openapi.yaml")["info"]["version"]
    # What the checkout says, not what the installed package says of itself (as the
    # metric does): a stale install shows.
    released = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert build["metric"]["version"] == released
    assert build["metric"]["contract_version"] == contract
    assert build["metric"]["commit"] == _commit(), "reinstall the package (nox does)"
    assert float(build["value"][1]) == 1


def _commit() -> str:
    """The checkout's commit, which hatch_build.py writes into the wheel: the tests run in
    a checkout, so a commit that cannot be read fails here rather than pass as
    "unknown" on both sides."""
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    )
    commit = done.stdout.strip()
    assert done.returncode == 0 and re.fullmatch("[0-9a-f]{40}", commit), done.stderr
    return commit


# -- the telemetry settings ------------------------------------------------------------------


@pytest.mark.req("FR-166")
@pytest.mark.parametrize(
    ("variable", "env"),
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", {"OTEL_EXPORTER_OTLP_ENDPOINT": "notaurl"}),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", {"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4318"}),
        (
            "OTEL_TRACES_SAMPLER_ARG",
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "abc"},
        ),
    ],
)
def test_a_malformed_telemetry_setting_stops_serve_with_one_line_naming_it(
    variable: str, env: dict[str, str], tmp_path: Path, postgres_url: str
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    done = _serve_once(
        tmp_path,
        {
            "NEON_DATABASE_URL": postgres_url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
            "TMPDIR": str(temporary),
            **env,
        },
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"todo-service: {variable}: "), lines
    assert not list(temporary.iterdir()), "a failed start left a temporary directory"


@pytest.mark.req("FR-166")
@pytest.mark.parametrize(
    ("variable", "env"),
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://:4318"}),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", {"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://collector"}),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:99999"}),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4318/v1/traces"},
        ),
        (
            "OTEL_TRACES_SAMPLER_ARG",
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
        ),
        # Without a ratio sampler the SDK ignores it, and traces every request.
        ("OTEL_TRACES_SAMPLER_ARG", {"OTEL_TRACES_SAMPLER_ARG": "0.1"}),
        ("OTEL_TRACES_SAMPLER", {"OTEL_TRACES_SAMPLER": "sometimes"}),
    ],
)
def test_every_telemetry_setting_the_sdk_would_misread_is_named_at_start(
    variable: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `serve` prints, one line each (the test above runs `serve` itself)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as refused:
        Settings()
    [problem] = settings_problems(refused.value)
    assert problem.startswith(f"{variable}: "), problem
    assert all(value not in problem for value in env.values()), "the value is echoed"


@pytest.mark.req("FR-166")
def test_well_formed_telemetry_settings_are_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector.example.com:4318")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "ParentBased_TraceIdRatio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    monkeypatch.setenv("TODO_METRICS_HOST", "0.0.0.0")
    settings = Settings()
    assert settings.tracing and settings.metrics_host == "0.0.0.0"


def _serve_once(workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`serve` that is expected to refuse to start: bounded, so one that starts fails."""
    return _serve_at(str(free_port()), workdir, env)


def _serve_at(port: str, workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [str(EXECUTABLE), "serve", "--port", port],
        cwd=workdir,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.req("FR-166")
def test_the_metrics_listener_binds_its_own_host_and_answers_only_metrics(
    serve: Serve, postgres_url: str, database: Database
) -> None:
    """TODO_METRICS_HOST, defaulting to the API's --host (127.0.0.2 here: the whole of
    127/8 is this machine's loopback, so what binds one address is not on another)."""
    defaulted = serve(
        postgres_url, host="127.0.0.2", extra_env={"TODO_METRICS_PORT": str(free_port())}
    )
    own = serve(
        postgres_url,
        extra_env={"TODO_METRICS_PORT": str(free_port()), "TODO_METRICS_HOST": "127.0.0.3"},
    )
    for service in (defaulted, own):
        service.wait_ready()
        assert service.metrics_url is not None
        assert one_off.get(service.metrics_url).status_code == 200
        with pytest.raises(httpx.ConnectError):
            one_off.get(re.sub(r"//[\d.]+:", "//127.0.0.1:", service.metrics_url))
    assert own.metrics_url is not None
    metrics = one_off.get(f"{own.metrics_url}?scraped=by-a-test")
    assert metrics.status_code == 200 and "todo_build_info" in metrics.text
    root = own.metrics_url.removesuffix("/metrics")
    for path in (
        "/",
        "/metrics/",
        "/metrics/x",
        "/metricsx",
        "/favicon.ico",
        TODOS,
        "/health/live",
    ):
        answer = one_off.get(root + path)
        assert answer.status_code == 404, f"{path}: {answer.status_code}"
        assert "# HELP" not in answer.text


@pytest.mark.req("FR-166")
def test_a_start_that_fails_leaves_no_temporary_directory(
    tmp_path: Path, postgres_url: str
) -> None:
    """On a busy metrics port, and on a busy API port once the directory the workers
    share is made."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    common = {"NEON_DATABASE_URL": postgres_url, "TMPDIR": str(temporary)}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = str(taken.getsockname()[1])

        metrics = _serve_at(str(free_port()), tmp_path, {**common, "TODO_METRICS_PORT": busy})
        assert metrics.returncode == 2, metrics.stderr
        [line] = metrics.stderr.strip().splitlines()
        assert line.startswith("todo-service: TODO_METRICS_HOST and TODO_METRICS_PORT"), line
        assert not list(temporary.iterdir()), "a busy metrics port left a temporary directory"

        api = _serve_at(busy, tmp_path, {**common, "TODO_METRICS_PORT": str(free_port())})
        assert api.returncode != 0 and "address already in use" in api.stderr.lower()
        assert not list(temporary.iterdir()), "a busy API port left a temporary directory"


@pytest.mark.kit("operated")
@pytest.mark.req("FR-166")
def test_a_collector_that_is_down_costs_a_line_a_minute_and_never_a_slow_stop(
    kit_jobs: Scheduled,
) -> None:
    operated: Operated = kit_jobs["operated"]
    assert operated.stop_seconds <= 2, f"SIGTERM took {operated.stop_seconds:.1f} s to end serve"
    said = [
        line
        for line in (json.loads(x) for x in operated.output.splitlines() if x.startswith("{"))
        if line["logger"].startswith("opentelemetry")
    ]
    assert len(said) == 1, f"{len(said)} lines in {LOAD_SECONDS} s: {said[:3]}"
    serving, stopped = operated.temporary
    assert serving, "serve keeps the directory its workers share in TMPDIR"
    assert not stopped, f"serve left {stopped} behind"
