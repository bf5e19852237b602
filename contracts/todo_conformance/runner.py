"""One run: the contract, the users and their preflight, every check, the fuzzer, and
the cleanup that follows whatever happened before it."""

import secrets
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from todo_conformance import checks as registry
from todo_conformance.catalogue import Contract, requirements
from todo_conformance.checks import (
    Broken,
    Check,
    Context,
    Failed,
    Inapplicable,
    Options,
    cors,  # noqa: F401  (each module registers its checks)
    crud,  # noqa: F401
    http,  # noqa: F401
    identity,  # noqa: F401
    isolation,  # noqa: F401
    limits,  # noqa: F401
    pages,  # noqa: F401
    retries,  # noqa: F401
    validation,  # noqa: F401
)
from todo_conformance.ledger import TODOS, Cleanup, Ledger
from todo_conformance.results import (
    ERROR,
    FAIL,
    NOT_APPLICABLE,
    PASS,
    CheckResult,
    RequirementResult,
    judge,
)
from todo_conformance.target import Exchange, KitFault, Target, Unreachable
from todo_conformance.users import SignInFailed, User

NEEDS = {
    "origin": "CORS needs the frontend's origin: give --origin",
    "quota": "the quota is the deployment's setting: give --quota",
    "metrics": "metrics are served on a listener of their own: give --metrics-url",
}


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived: stop checking, clean up, report."""


@dataclass
class Run:
    base_url: str
    options: Options
    users: Callable[[str], list[User]]
    contract_file: bytes | None = None
    max_rps: float | None = None
    fuzz: Callable[[Context], list[CheckResult]] | None = None
    expected: dict[str, str] = field(default_factory=dict)
    only: set[str] | None = None


@dataclass
class Outcome:
    meta: dict[str, Any]
    requirements: list[RequirementResult]
    cleanup: Cleanup | None

    @property
    def exit_status(self) -> int:
        failed = any(r.counts_against for r in self.requirements)
        leaked = self.cleanup is not None and not self.cleanup.completed
        return 1 if failed or leaked else 0


def _shown(exchanges: list[Exchange]) -> list[dict[str, Any]]:
    return [e.shown() for e in exchanges[-3:]]


def _applicable(check: Check, ctx: Context) -> str | None:
    if ctx.options.mode not in check.modes:
        modes = " and ".join(sorted(check.modes))
        return f"applies in {modes} mode, and this run is in {ctx.options.mode} mode"
    if not ctx.contract.at_least(check.since):
        return f"the served contract is {ctx.contract.version}; this came in {check.since}"
    if check.writes and ctx.options.read_only:
        return "needs to write, and this run is --read-only"
    if check.needs is not None and not getattr(
        ctx.options, {"metrics": "metrics_url"}.get(check.needs, check.needs)
    ):
        return NEEDS[check.needs]
    return None


def run_check(check: Check, ctx: Context) -> CheckResult:
    skip = _applicable(check, ctx)
    if skip is not None:
        return CheckResult(check.name, check.ids, NOT_APPLICABLE, skip)
    seen = ctx.target.watching()
    started = time.monotonic()

    def result(outcome: str, reason: str, shown: list[Exchange] = ()) -> CheckResult:  # type: ignore[assignment]
        return CheckResult(
            check.name, check.ids, outcome, reason, time.monotonic() - started, _shown(list(shown))
        )

    try:
        check.run(ctx)
    except Failed as failed:
        return result(FAIL, failed.reason, failed.exchanges or seen[-1:])
    except Inapplicable as why:
        return result(NOT_APPLICABLE, str(why))
    except (Broken, Unreachable) as broken:
        return result(ERROR, f"could not check: {broken}", seen[-1:])
    except KitFault as fault:
        return result(ERROR, f"a fault of the kit: {fault}")
    except Exception as fault:  # a check that crashed is the kit's fault, never the target's
        where = traceback.format_exception(fault)[-1].strip()
        return result(ERROR, f"a fault of the kit: {where}", seen[-1:])
    return result(PASS, "")


def _preflight(ctx: Context) -> list[str]:
    """Every user is accepted, and the users are distinct; what is wrong, user by user."""
    problems = []
    for user in ctx.users.values():
        answer = ctx.send("GET", TODOS, user)
        if answer.status != 200:
            problems.append(
                f"user {user.name}: GET {TODOS} answered {answer.status}: {answer.body[:300]!r}"
            )
    if problems or ctx.options.read_only:
        names = [
            u.user_header or str((u.claims() or {}).get("sub", u.token)) for u in ctx.users.values()
        ]
        if len(set(names)) != len(names):
            problems.append("two of the kit's users are the same user")
        return problems
    probes: dict[str, str] = {}
    for user in ctx.users.values():
        if user.name == "fresh":
            continue  # it never writes: its list stays empty, which tells it apart
        try:
            probes[user.name] = ctx.create(user, "preflight")["user_id"]
        except Broken as why:
            problems.append(f"user {user.name}: {why}")
    if len(set(probes.values())) != len(probes):
        problems.append(f"the kit's users are not distinct: their todos carry {probes}")
    fresh = ctx.users.get("fresh")
    if fresh is not None and not problems:
        listed = ctx.send("GET", TODOS, fresh).json_or_none() or {}
        if listed.get("items"):
            problems.append("user fresh holds todos: it is one of the other users, or not new")
    return problems


def _meta(run: Run, contract: Contract | None, started: datetime) -> dict[str, Any]:
    return {
        "kit": {"name": "todo-conformance", "version": metadata.version("todo-service")},
        "target": run.base_url,
        "mode": run.options.mode,
        "read_only": run.options.read_only,
        "contract": None
        if contract is None
        else {"source": contract.source, "version": contract.version, "sha256": contract.sha256},
        "started_at": started.isoformat(timespec="seconds"),
    }


def _every_requirement(outcome: str, reason: str, only: set[str] | None) -> list[RequirementResult]:
    return [
        RequirementResult(r.id, r.text, outcome, reason, [])
        for r in requirements()
        if only is None or r.id in only
    ]


def execute(run: Run, target: Target, interrupted: Callable[[], bool]) -> Outcome:
    started = datetime.now(UTC)
    run_id = f"{started:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    try:
        raw = run.contract_file or target.request("GET", "/openapi.yaml").body
        contract = Contract.parse(
            raw, "--contract" if run.contract_file else f"{run.base_url}/openapi.yaml"
        )
    except (Unreachable, ValueError) as why:
        return Outcome(
            _meta(run, None, started),
            _every_requirement(ERROR, f"no contract to check against: {why}", run.only),
            None,
        )
    meta = _meta(run, contract, started) | {"run_id": run_id}
    try:
        users = {u.name: u for u in run.users(run_id)}
    except (SignInFailed, Unreachable, OSError) as why:
        return Outcome(
            meta, _every_requirement(ERROR, f"a user could not sign in: {why}", run.only), None
        )
    # Who the kit was, so that an operator can look for anything left behind.
    meta["users"] = {name: user.expected_id for name, user in users.items()}
    ledger = Ledger()
    for user in users.values():
        ledger.enlist(user)
    ctx = Context(target, contract, users, ledger, run.options, run_id)
    results: list[CheckResult] = []
    cleanup: Cleanup | None = None
    try:
        problems = _preflight(ctx)
        if problems:
            reason = "the preflight failed: " + "; ".join(problems)
            return Outcome(meta, _every_requirement(ERROR, reason, run.only), None)
        for check in registry.REGISTRY:
            if run.only is not None and not set(check.ids) & run.only:
                continue
            if interrupted():
                raise Interrupted
            results.append(run_check(check, ctx))
        if run.fuzz is not None and not interrupted():
            results += run.fuzz(ctx)
    except (Interrupted, KeyboardInterrupt):
        meta["interrupted"] = True
    finally:
        if not run.options.read_only:
            cleanup = ledger.clean(target, ctx.mine)
    if "fuzz" in ctx.notes:
        meta["fuzz"] = ctx.notes["fuzz"]
    meta["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    meta["requests"] = target.sent
    meta["cleanup"] = (
        {"completed": True, "read_only": True}
        if cleanup is None
        else {
            "completed": cleanup.completed,
            "created": cleanup.created,
            "deleted": cleanup.deleted,
            "left": cleanup.left,
            "problems": cleanup.problems,
        }
    )
    return Outcome(
        meta, _judge_all(run, contract, results, meta.get("interrupted", False)), cleanup
    )


def _judge_all(
    run: Run, contract: Contract, results: list[CheckResult], interrupted: bool
) -> list[RequirementResult]:
    judged = []
    for requirement in requirements():
        if run.only is not None and requirement.id not in run.only:
            continue
        inapplicable = None
        if not contract.at_least(requirement.since):
            inapplicable = (
                f"the served contract is {contract.version}; this requirement came in"
                f" {requirement.since}"
            )
        result = judge(requirement, results, inapplicable)
        unchecked = result.outcome in {NOT_APPLICABLE, ERROR} and not result.checks
        if interrupted and unchecked and not requirement.unobservable and inapplicable is None:
            result.outcome = ERROR
            result.reason = "the run was interrupted before it was checked"
        if requirement.id in run.expected:
            result.expected_failure = run.expected[requirement.id]
        judged.append(result)
    return judged
