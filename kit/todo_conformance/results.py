"""What a run found: each check's outcome, and each requirement's, with the reasons.

`fail` is a departure from the contract, wherever the kit saw it. `error` is what the
kit could not observe, and says which of these it was: the target unreachable, a user
who could not sign in, a check blocked by a departure it needed not to be there (the
departure itself is a `fail` of its own), or a fault of the kit. `advice` is what a
check noticed beyond the contract: shown, never failing a run."""

from dataclasses import dataclass, field
from typing import Any

from todo_conformance.catalogue import Requirement

PASS, FAIL, NOT_APPLICABLE, ERROR = "pass", "fail", "not-applicable", "error"
# Why an `error`: the first word of its reason.
UNREACHABLE, SIGN_IN, BLOCKED, KIT_FAULT = "unreachable", "sign-in", "blocked", "kit fault"


def erred(cause: str, detail: str) -> str:
    return f"{cause}: {detail}"


@dataclass
class CheckResult:
    name: str
    ids: tuple[str, ...]
    outcome: str
    reason: str = ""
    seconds: float = 0.0
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    # The clauses it enforces: locations in the contract (openapi.yaml#/...).
    clauses: tuple[str, ...] = ()
    advice: list[str] = field(default_factory=list)

    def shown(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "outcome": self.outcome,
            "reason": self.reason,
            "enforces": [*self.ids, *self.clauses],
            "advice": self.advice,
            "seconds": round(self.seconds, 3),
            "exchanges": self.exchanges,
        }


@dataclass
class RequirementResult:
    id: str
    text: str
    outcome: str
    reason: str
    checks: list[CheckResult]
    expected_failure: str | None = None

    @property
    def stale(self) -> bool:
        """Listed as an expected failure, and it passes: the list has gone stale."""
        return self.expected_failure is not None and self.outcome == PASS

    @property
    def counts_against(self) -> bool:
        """Whether this makes the run fail: an error, a failure not listed as
        expected, or a listed failure that no longer fails."""
        if self.outcome == ERROR:
            return True
        if self.expected_failure is not None:
            return self.outcome == PASS
        return self.outcome == FAIL

    @property
    def advice(self) -> list[str]:
        return [note for check in self.checks for note in check.advice]

    def shown(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "outcome": self.outcome,
            "reason": self.reason,
            "expected_failure": self.expected_failure,
            "advice": self.advice,
            "checks": [c.shown() for c in self.checks],
        }


def judge(
    requirement: Requirement, checks: list[CheckResult], inapplicable: str | None
) -> RequirementResult:
    """A requirement's outcome from its checks: any failure fails it, else any error
    errs it, else any pass passes it; with none run, it is not applicable, and why."""
    mine = [c for c in checks if requirement.id in c.ids]

    def result(outcome: str, reason: str) -> RequirementResult:
        return RequirementResult(requirement.id, requirement.text, outcome, reason, mine)

    if requirement.unobservable:
        return result(NOT_APPLICABLE, f"cannot be observed over HTTP: {requirement.unobservable}")
    if inapplicable:
        return result(NOT_APPLICABLE, inapplicable)
    for outcome in (FAIL, ERROR):
        found = [c for c in mine if c.outcome == outcome]
        if found:
            return result(outcome, "; ".join(f"{c.name}: {c.reason}" for c in found))
    if any(c.outcome == PASS for c in mine):
        passed = sum(c.outcome == PASS for c in mine)
        return result(PASS, f"{passed} check{'' if passed == 1 else 's'} passed")
    if mine:
        reasons = sorted({c.reason for c in mine})
        return result(NOT_APPLICABLE, "; ".join(reasons))
    return result(ERROR, erred(KIT_FAULT, "the kit has no check for this requirement"))
