"""One run: the users and their preflight, every check, the fuzzer, and the cleanup that
follows whatever happened before it (a failure, an error, SIGINT or SIGTERM)."""

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
)
from todo_conformance.ledger import TODOS, Cleanup, Ledger
from todo_conformance.progress import Progress
from todo_conformance.results import (
    BLOCKED,
    ERROR,
    FAIL,
    KIT_FAULT,
    NOT_APPLICABLE,
    PASS,
    SIGN_IN,
    UNREACHABLE,
    CheckResult,
    RequirementResult,
    erred,
    judge,
)
from todo_conformance.target import Exchange, KitFault, Target, Unreachable
from todo_conformance.users import Accounts, SignInFailed, User

NEEDS = {
    "origin": "CORS needs the frontend's origin: give --origin",
    "quota": "the quota is the deployment's setting: give --quota",
    "metrics": "metrics are served on a listener of their own: give --metrics-url",
}
# The ids a list that leaks breaks: it lists more than the caller's todos, and some
# statement reads another user's rows.
LEAKING_LIST = ("FR-009", "FR-013", "SC-005")


@dataclass
class Stop:
    """SIGINT or SIGTERM: the first one stops the run at its next step (KeyboardInterrupt),
    unless cleanup is under way, which it never interrupts."""

    signal: int = 0
    cleaning: bool = False

    def heard(self, signum: int) -> None:
        if not self.signal:
            self.signal = signum
            if not self.cleaning:
                raise KeyboardInterrupt


@dataclass
class Run:
    base_url: str
    options: Options
    users: Callable[[str], list[User]]
    fuzz: Callable[[Context, Progress], list[CheckResult]] | None = None
    expected: dict[str, str] = field(default_factory=dict)
    only: set[str] | None = None
    # The Better Auth accounts the run signs up (--better-auth), deleted at its end.
    accounts: Accounts | None = None


@dataclass
class Outcome:
    meta: dict[str, Any]
    requirements: list[RequirementResult]
    cleanup: Cleanup | None
    accounts: Accounts | None = None

    @property
    def interrupted(self) -> bool:
        return bool(self.meta.get("interrupted"))

    @property
    def verdict(self) -> str:
        if self.interrupted:
            return "INTERRUPTED"
        return "PASSED" if self.exit_status == 0 else "FAILED"

    @property
    def exit_status(self) -> int:
        if self.interrupted:
            return 130
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
    if ctx.contract.lacks(check.since):
        return ctx.contract.lacks(check.since)
    if check.writes and ctx.options.read_only:
        return "needs to write, and this run is --read-only"
    if check.needs is not None and not getattr(
        ctx.options, {"metrics": "metrics_url"}.get(check.needs, check.needs)
    ):
        return NEEDS[check.needs]
    return None


def run_check(check: Check, ctx: Context) -> CheckResult:
    clauses = tuple(f"openapi.yaml{c}" for c in check.clauses)
    skip = _applicable(check, ctx)
    if skip is not None:
        return CheckResult(check.name, check.ids, NOT_APPLICABLE, skip, clauses=clauses)
    seen = ctx.target.watching()
    ctx.advice = []
    started = time.monotonic()

    def result(outcome: str, reason: str, shown: list[Exchange] = ()) -> CheckResult:  # type: ignore[assignment]
        return CheckResult(
            check.name,
            check.ids,
            outcome,
            reason,
            time.monotonic() - started,
            _shown(list(shown)),
            clauses,
            ctx.advice,
        )

    try:
        check.run(ctx)
    except Failed as failed:
        return result(FAIL, failed.reason, failed.exchanges or seen[-1:])
    except Inapplicable as why:
        return result(NOT_APPLICABLE, str(why))
    except Broken as blocked:
        return result(ERROR, erred(BLOCKED, str(blocked)), seen[-1:])
    except Unreachable as lost:
        return result(ERROR, erred(UNREACHABLE, str(lost)), seen[-1:])
    except KitFault as fault:
        return result(ERROR, erred(KIT_FAULT, str(fault)))
    except Exception as fault:  # a check that crashed is the kit's fault, never the target's
        where = traceback.format_exception(fault)[-1].strip()
        return result(ERROR, erred(KIT_FAULT, where), seen[-1:])
    return result(PASS, "")


def _one_user(users: list[User]) -> bool:
    """Whether two of the kit's users are one user by what they present: the same token,
    or tokens naming the same subject of the same issuer."""
    named = [
        (c.get("iss"), c.get("sub")) if (c := u.claims()) else (u.token or u.user_header)
        for u in users
    ]
    return len(set(named)) != len(named)


def _preflight(ctx: Context) -> str | None:
    """Every user is accepted and the users are distinct, before any check. What the
    target gets wrong here is a departure like any other (a list that leaks fails
    FR-009, FR-013 and SC-005); what keeps the kit from checking at all is returned."""
    for user in ctx.users.values():
        answer = ctx.send("GET", TODOS, user)
        if answer.status == 200:
            continue
        if not ctx.bearer and answer.status == 401:
            # A deployment in jwt mode, conforming, and the kit has no tokens for it.
            return erred(
                SIGN_IN,
                f"the target wants bearer tokens, not X-User-ID: GET {TODOS} answered 401"
                f" ({answer.header('www-authenticate') or 'no WWW-Authenticate'}); give"
                " --better-auth URL (the Better Auth it trusts) or --token-command CMD",
            )
        if ctx.bearer and answer.status in (401, 403):
            return erred(
                SIGN_IN,
                f"the target refused user {user.name}'s token: GET {TODOS} answered"
                f" {answer.status}: {answer.body[:300]!r}",
            )
        ctx.depart(("FR-009",), f"user {user.name}'s list answered {answer.status}", answer)
    if _one_user(list(ctx.users.values())):
        return erred(SIGN_IN, "the kit's users are not distinct: two present the same user")
    if ctx.options.read_only:
        return None
    owners: dict[str, str] = {}
    for user in ctx.users.values():
        if user.name == "fresh":
            continue  # it never writes: its list stays empty, which tells it apart
        try:
            owners[user.name] = str(ctx.create(user, "preflight").get("user_id"))
        except Broken:
            continue  # the failed create is a departure of its own (FR-008)
    if len(set(owners.values())) != len(owners):
        ctx.depart(
            ("FR-013", "SC-005", *(("FR-105",) if ctx.bearer else ())),
            f"distinct users are one user to the target: their todos carry {owners}",
        )
    fresh = ctx.send("GET", TODOS, ctx.users["fresh"])
    listed = (fresh.json_or_none() or {}).get("items") if fresh.status == 200 else None
    if listed:
        ctx.depart(
            LEAKING_LIST,
            f"user fresh, who never wrote, is listed {len(listed)} todos: the list holds"
            " other users' todos",
            fresh,
        )
    return None


def known_versions() -> list[str]:
    """The contract versions the kit checks: those that brought a requirement it can
    observe over HTTP (a later version is checked as the newest of them)."""
    observable = {r.since for r in requirements() if not r.unobservable}
    return sorted(observable, key=lambda v: tuple(map(int, v.split("."))))


def _meta(run: Run, contract: Contract | None, started: datetime, run_id: str) -> dict[str, Any]:
    return {
        "kit": {
            "name": "todo-conformance",
            "version": metadata.version("todo-conformance"),
            "contract_versions": known_versions(),
        },
        "target": run.base_url,
        "mode": run.options.mode,
        "read_only": run.options.read_only,
        "contract": None
        if contract is None
        else {"source": contract.source, "version": contract.version, "sha256": contract.sha256},
        "started_at": started.isoformat(timespec="seconds"),
        "run_id": run_id,
        "interrupted": False,
    }


def _every_requirement(outcome: str, reason: str, only: set[str] | None) -> list[RequirementResult]:
    return [
        RequirementResult(r.id, r.text, outcome, reason, [])
        for r in requirements()
        if only is None or r.id in only
    ]


def _check(run: Run, ctx: Context, progress: Progress, results: list[CheckResult]) -> str | None:
    """The preflight, every check chosen, then the fuzzer, each result into `results` as
    it comes (an interrupted run keeps what it found); what halted the run, if anything."""
    progress.phase("preflight")
    halted = _preflight(ctx)
    if halted is not None:
        return halted
    chosen = [c for c in registry.REGISTRY if run.only is None or set(c.ids) & run.only]
    progress.phase("checks", total=len(chosen))
    for check in chosen:
        results.append(run_check(check, ctx))
        progress.step()
    if run.fuzz is not None:
        results += run.fuzz(ctx, progress)
    return None


def execute(
    run: Run, contract: Contract | None, target: Target, stop: Stop, progress: Progress
) -> Outcome:
    """`contract` None: the target did not answer when asked for it."""
    started = datetime.now(UTC)
    run_id = f"{started:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    meta = _meta(run, contract, started, run_id)
    if contract is None:
        meta["interrupted"] = bool(stop.signal)
        reason = (
            "interrupted: before the contract was read"
            if stop.signal
            else erred(UNREACHABLE, f"no contract to check against: {run.base_url} did not answer")
        )
        return Outcome(meta, _every_requirement(ERROR, reason, run.only), None)
    ledger = Ledger()
    results: list[CheckResult] = []
    departures: list[CheckResult] = []
    halted: str | None = None
    cleanup: Cleanup | None = None
    ctx: Context | None = None
    try:
        progress.phase("signing users in")
        users = {u.name: u for u in run.users(run_id)}
        # Who the kit was, so that an operator can look for anything left behind.
        meta["users"] = {name: user.expected_id for name, user in users.items()}
        for user in users.values():
            ledger.enlist(user)
        ctx = Context(target, contract, users, ledger, run.options, run_id)
        departures = ctx.departures
        halted = _check(run, ctx, progress, results)
    except KeyboardInterrupt:
        meta["interrupted"] = True
    except SignInFailed as why:
        halted = erred(SIGN_IN, str(why))
    except Unreachable as why:
        halted = erred(UNREACHABLE, str(why))
    finally:
        stop.cleaning = True
        meta["interrupted"] = meta["interrupted"] or bool(stop.signal)
        if not run.options.read_only:
            progress.phase("cleanup", total=ledger.count)
            cleanup = ledger.clean(target, _mine(run_id), _deleting(ctx))
        if run.accounts is not None:
            # After the todos: deleting an account first would strand its todos.
            progress.phase("deleting accounts")
            run.accounts.delete()
        # A signal during cleanup did not stop it; the run was interrupted all the same.
        meta["interrupted"] = meta["interrupted"] or bool(stop.signal)
    if ctx is not None and "fuzz" in ctx.notes:
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
    if run.accounts is not None:
        meta["cleanup"]["accounts"] = run.accounts.shown()
    if halted is not None:
        judged = _every_requirement(ERROR, halted, run.only)
    else:
        judged = _judge_all(run, contract, [*departures, *results], meta["interrupted"])
    return Outcome(meta, judged, cleanup, run.accounts)


def _deleting(ctx: Context | None) -> Callable[[str, Exchange], None]:
    """What cleanup saw the target get wrong: a delete refused or ignored (FR-012)."""

    def depart(what: str, exchange: Exchange) -> None:
        if ctx is not None:
            ctx.depart(("FR-012",), what, exchange)

    return depart


def _mine(run_id: str) -> Callable[[str], bool]:
    """Whether a title is this run's: it carries the run id, as every todo it makes."""
    return lambda title: title.startswith(f"[{registry.MARK} {run_id}]")


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
        inapplicable = inapplicable or contract.lacks(requirement.since)
        result = judge(requirement, results, inapplicable)
        unchecked = result.outcome in {NOT_APPLICABLE, ERROR} and not result.checks
        if interrupted and unchecked and not requirement.unobservable and inapplicable is None:
            result.outcome = ERROR
            result.reason = "interrupted: the run was interrupted before it was checked"
        if requirement.id in run.expected:
            result.expected_failure = run.expected[requirement.id]
        judged.append(result)
    return judged
