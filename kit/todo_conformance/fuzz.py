"""Schemathesis inside the kit (FR-146): every check it has, on the contract's view for
the run's identity mode, with two of the kit's users (so its object-level authorization
check replays one user's reads as the other), positive and negative data, stateful
sequences through the contract's links. Its findings come back under the requirement
each breaks (findings.py); every todo it made goes into the ledger, to be deleted with the rest."""

import base64
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from todo_conformance.checks import Context
from todo_conformance.checks.v2_bulk import run_tag
from todo_conformance.findings import ids
from todo_conformance.progress import Progress
from todo_conformance.results import FAIL, CheckResult
from todo_conformance.target import Exchange

# What a well-formed request may rightly be answered besides 2xx: 404 for an id that is
# not there, 412 for an If-Match naming another version, 409 and 429 for limits.
EXPECTED_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]


def mode_view(document: dict[str, Any], mode: str) -> dict[str, Any]:
    """What a deployment in `mode` promises: its one way in is the only security
    scheme, on the operations that identify their caller (those the contract secures,
    or, in a contract without security schemes, those taking X-User-ID), and X-User-ID
    is no parameter (header mode: it is that scheme's header; bearer mode: ignored)."""
    view = copy.deepcopy(document)
    components = view.setdefault("components", {})
    for shape in components.get("schemas", {}).values():
        if _is_problem(shape):
            _open_problem(shape)
    if mode == "header":
        scheme = {"userIdHeader": {"type": "apiKey", "in": "header", "name": "X-User-ID"}}
    else:
        scheme = {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    components["securitySchemes"] = scheme
    way_in: list[dict[str, list[str]]] = [{next(iter(scheme)): []}]
    secured_by_default = bool(view.pop("security", None))
    parameters = components.get("parameters", {})
    user = {key for key, p in parameters.items() if _is_user(p)}
    for key in user:
        del parameters[key]
    refs = {f"#/components/parameters/{key}" for key in user}
    for item in view.get("paths", {}).values():
        shared = item.get("parameters", [])
        item_names_user = any(_is_user(p, refs) for p in shared)
        if "parameters" in item:
            item["parameters"] = [p for p in shared if not _is_user(p, refs)]
        for key, operation in item.items():
            if key == "parameters" or not isinstance(operation, dict):
                continue
            own = operation.get("parameters", [])
            names_user = item_names_user or any(_is_user(p, refs) for p in own)
            if "parameters" in operation:
                operation["parameters"] = [p for p in own if not _is_user(p, refs)]
            secured = operation.get("security", secured_by_default or None)
            operation["security"] = way_in if (secured or names_user) else []
            for response in operation.get("responses", {}).values():
                for link in response.get("links", {}).values():
                    link.get("parameters", {}).pop("header.X-User-ID", None)
    return view


def _is_problem(shape: Any) -> bool:
    required = shape.get("required", []) if isinstance(shape, dict) else []
    return {"type", "title", "status"} <= set(required)


def _open_problem(shape: dict[str, Any]) -> None:
    """RFC 9457 lets a problem carry extension members, and its `type` and `title` are
    the implementation's to choose: a contract that closes them is held to the RFC
    there (FR-172), so a house style of its own is no finding."""
    shape["additionalProperties"] = True
    for member in ("type", "title"):
        declared = shape.get("properties", {}).get(member)
        if isinstance(declared, dict):
            for bound in ("maxLength", "format", "pattern"):
                declared.pop(bound, None)


def _is_user(parameter: Any, refs: set[str] = frozenset()) -> bool:  # type: ignore[assignment]
    if not isinstance(parameter, dict):
        return False
    return parameter.get("$ref") in refs or str(parameter.get("name", "")).lower() == "x-user-id"


def _config(directory: Path, read_only: bool) -> Path:
    path = directory / "schemathesis.toml"
    statuses = ", ".join(f'"{s}"' for s in EXPECTED_STATUSES)
    text = f"[checks.positive_data_acceptance]\nexpected-statuses = [{statuses}]\n"
    if read_only:
        # The coverage phase also tries the methods a path does not declare.
        text += "\n[phases.coverage]\nunexpected-methods = []\n"
    path.write_text(text)
    return path


class Fuzzer:
    def __init__(self, examples: int, seed: int, max_rps: float | None) -> None:
        self.examples = examples
        self.seed = seed
        self.max_rps = max_rps

    def command(self, ctx: Context, directory: Path) -> list[str]:
        # JSON, which schemathesis reads as it reads YAML: PyYAML's dump of the contract
        # cost a third of a CPU-second a run. A date YAML read unquoted is written as its
        # ISO text, as JSON would have carried it.
        view = directory / "contract.json"
        view.write_text(json.dumps(mode_view(ctx.contract.document, ctx.options.mode), default=str))
        auth = directory / "users.json"
        users = [ctx.main, ctx.alt]
        auth.write_text(
            json.dumps(
                {
                    "auth": [
                        {
                            "name": u.name,
                            "fixedHeaders": [{"name": n, "value": v} for n, v in u.identity()],
                        }
                        for u in users
                    ]
                }
            )
        )
        program = Path(sys.executable).with_name("schemathesis")
        command = [
            str(program) if program.exists() else shutil.which("schemathesis") or "schemathesis",
            "--config-file", str(_config(directory, ctx.options.read_only)),
            "run", str(view),
            "--url", ctx.target.base_url,
            "--auth-wfc", str(auth),
            "--checks", "all",
            "--mode", "all",
            # One worker: Python 3.11.7's ast.parse is not thread-safe.
            "--workers", "1",
            "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", str(self.examples),
            "--seed", str(self.seed),
            "--generation-database", "none",
            "--output-sanitize", "false",
            "--report", "ndjson",
            "--report-ndjson-path", str(directory / "events.ndjson"),
        ]  # fmt: skip
        excluded = []
        if ctx.options.mode == "header":
            # The header names a caller; it is no authentication to find ignored.
            excluded.append("ignored_auth")
        if ctx.options.read_only:
            # Reads only: no write operation, and no probing with undeclared methods.
            command += ["--include-method", "GET", "--include-method", "HEAD"]
            excluded.append("unsupported_method")
        if excluded:
            command += ["--exclude-checks", ",".join(excluded)]
        if self.max_rps:
            command += ["--rate-limit", f"{max(1, int(self.max_rps))}/s"]
        return command

    def __call__(self, ctx: Context, progress: Progress) -> list[CheckResult]:
        directory = Path(tempfile.mkdtemp(prefix="todo-conformance-fuzz-"))
        env = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": "todo_conformance.fuzz_hooks",
            "TODO_CONFORMANCE_MARK": ctx.title(),
            "TODO_CONFORMANCE_RUN_TAG": run_tag(ctx),
        }
        events, log = directory / "events.ndjson", directory / "output.txt"
        process: subprocess.Popen[str] | None = None
        try:
            command = self.command(ctx, directory)
            progress.phase("fuzzing", extra=lambda: f"{_scenarios(events)} scenarios")
            with signals_held(), log.open("w") as output:
                process = subprocess.Popen(
                    command,
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,
                )
            process.wait(timeout=1800)
        finally:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
            results = self._read(ctx, events)
            output_text = log.read_text(errors="replace") if log.exists() else ""
            # The event log carries the users' tokens, so it goes with its directory, and
            # the summary does not point at it.
            shutil.rmtree(directory, ignore_errors=True)
        assert process is not None, "started, as the try ran to its end"
        kept = [line for line in output_text.splitlines() if line.strip() and "NDJSON:" not in line]
        summary = [line for line in kept if line != "Reports:"][-25:]
        ctx.notes["fuzz"] = {"exit_status": process.returncode, "summary": summary}
        return results

    def _read(self, ctx: Context, events: Path) -> list[CheckResult]:
        """The findings, and every todo a 201 named (into the ledger)."""
        if not events.exists():
            return []
        contract = mode_view(ctx.contract.document, ctx.options.mode)
        found: dict[tuple[str, str, str, tuple[str, ...]], CheckResult] = {}
        for line in events.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # the last line of a run cut short
            finished = event.get("ScenarioFinished")
            if not finished:
                continue
            recorder = finished["recorder"]
            cases, interactions = recorder.get("cases", {}), recorder.get("interactions", {})
            # The fuzzer's requests are the run's too.
            ctx.target.sent += len(interactions)
            for case_id, interaction in interactions.items():
                case = cases.get(case_id, {}).get("value", {})
                ctx.ledger.note(_exchange(interaction, case.get("auth_identity")))
            for case_id, results in recorder.get("checks", {}).items():
                for result in results:
                    if result.get("status") != "failure":
                        continue
                    failure = (result.get("failure_info") or {}).get("failure", {})
                    case = cases.get(case_id, {}).get("value", {})
                    interaction = interactions.get(case_id, {})
                    if interaction and not _valid_http(interaction):
                        continue
                    response = interaction.get("response") or {}
                    broken = ids(result["name"], failure, case, response, contract)
                    operation = str(failure.get("operation"))
                    key = (result["name"], operation, str(failure.get("type")), broken)
                    if key not in found:
                        title = failure.get("title", result["name"])
                        found[key] = CheckResult(
                            f"fuzz: {title} on {operation}",
                            broken,
                            FAIL,
                            str(failure.get("message", ""))[:1000],
                            exchanges=[_exchange(interaction, None).shown()] if interaction else [],
                        )
        return list(found.values())


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends, then stop the run as they would have:
    one that cut the fuzzer's start in two would leave it running in a session of its
    own, making todos after the cleanup had looked for them."""
    heard: list[int] = []
    kept = {
        held: signal.signal(held, lambda signum, frame: heard.append(signum))
        for held in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for held, handler in kept.items():
            signal.signal(held, handler)
        for signum in heard[:1]:
            signal.raise_signal(signum)


def _scenarios(events: Path) -> int:
    """How many scenarios the fuzzer has finished so far (its event log grows as it goes)."""
    try:
        with events.open("rb") as log:
            return sum(b'"ScenarioFinished"' in line for line in log)
    except OSError:
        return 0


def _exchange(interaction: dict[str, Any], user: str | None) -> Exchange:
    """A recorded interaction as the kit's own exchanges are kept, for the reports."""
    request = interaction["request"]
    response = interaction.get("response") or {}
    return Exchange(
        request["method"],
        request["uri"],
        [(k, v.encode("latin-1")) for k, vs in request.get("headers", {}).items() for v in vs],
        _raw(request.get("body")),
        int(response.get("status_code") or 0),
        httpx.Headers([(k, v) for k, vs in response.get("headers", {}).items() for v in vs]),
        _raw(response.get("content")),
        float(response.get("elapsed") or 0),
        user,
    )


def _valid_http(interaction: dict[str, Any]) -> bool:
    """Whether the request was HTTP at all: a field value with a control character
    (RFC 9110 5.5) may be refused by the server before the contract is reached, in
    whatever shape its HTTP layer has."""
    for values in interaction["request"].get("headers", {}).values():
        for value in values:
            if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
                return False
    return True


def _raw(content: Any) -> bytes:
    if not isinstance(content, dict) or "$base64" not in content:
        return b""
    return base64.b64decode(content["$base64"])
