"""What a check is, what it can reach (the Context), and how it ends.

A check proves one thing about the target and names the requirement ids it proves, and
the clauses of the contract it enforces (openapi.yaml locations). It passes by
returning; it fails by raising Failed (the target broke the contract: what was
expected, what came, the exchange that shows it); it ends in error by raising Broken
(blocked: what it needed, the target did not provide, which the kit records as a
departure of its own with `depart`); it is not applicable by raising Inapplicable (with
the reason). Every expectation is stated from the contract, never guessed from one
implementation: where the contract leaves a choice, every conforming answer passes, and
what a check would like beyond the contract is `advise`d, never failed."""

import importlib
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from todo_conformance.catalogue import Contract
from todo_conformance.ledger import TODOS as TODOS
from todo_conformance.ledger import Ledger
from todo_conformance.results import FAIL, CheckResult
from todo_conformance.target import Exchange, Headers, Target
from todo_conformance.users import User

T = TypeVar("T")
ONE = TODOS + "/{todo_id}"
PROBLEM = "application/problem+json"
MARK = "todo-conformance"


class Failed(Exception):
    def __init__(self, reason: str, *exchanges: Exchange) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exchanges = list(exchanges)


class Broken(Exception):
    """Blocked: the kit could not check, for want of what the target did not provide."""


class Inapplicable(Exception):
    """Not applicable to this target or run, and why."""


@dataclass(frozen=True)
class Options:
    mode: str  # "header" or "bearer"
    read_only: bool = False
    origin: str | None = None
    quota: int | None = None
    metrics_url: str | None = None


@dataclass
class Context:
    target: Target
    contract: Contract
    users: dict[str, User]
    ledger: Ledger
    options: Options
    run_id: str
    notes: dict[str, Any] = field(default_factory=dict)
    # Departures seen outside a check's own expectations (setup, preflight, cleanup),
    # each a failure of the ids it breaks; and the current check's advice.
    departures: list[CheckResult] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def depart(self, ids: tuple[str, ...], what: str, *exchanges: Exchange) -> None:
        """The target broke the contract where the kit was not checking it: a failure of
        `ids`, reported once, with the exchange that shows it."""
        with self._lock:
            if any(d.ids == ids and d.reason == what for d in self.departures):
                return
            self.departures.append(
                CheckResult(
                    "seen on the way",
                    ids,
                    FAIL,
                    what,
                    exchanges=[e.shown() for e in exchanges[-3:]],
                )
            )

    def advise(self, note: str) -> None:
        """Something beyond the contract, worth knowing: shown, never a failure."""
        self.advice.append(note)

    # -- who ---------------------------------------------------------------------------

    @property
    def main(self) -> User:
        return self.users["main"]

    @property
    def alt(self) -> User:
        return self.users["alt"]

    @property
    def third(self) -> User:
        return self.users["third"]

    @property
    def bearer(self) -> bool:
        return self.options.mode == "bearer"

    def own_user(self, role: str) -> User:
        """A user that holds nothing but what this check makes: in header mode a new
        one; in bearer mode (users come from outside) alt, emptied of what the kit made
        before, and never of a todo it did not make."""
        if not self.bearer:
            user = User(f"{role} {uuid.uuid4().hex[:8]}", user_header=str(uuid.uuid4()))
            self.ledger.enlist(user)
            return user
        user = self.alt
        for todo in self.listed(user):
            if not str(todo.get("title", "")).startswith(f"[{MARK} "):
                raise Broken(f"user {user.name} holds todos the kit did not make: give it its own")
            self.send("DELETE", f"{TODOS}/{todo['id']}", user)
        left = self.listed(user)
        if left:
            self.depart(("FR-012",), f"deleted todos still listed: {len(left)} of user {user.name}")
            raise Broken(f"could not empty user {user.name}'s list")
        return user

    # -- what ----------------------------------------------------------------------------

    def title(self, text: str = "") -> str:
        """A title carrying the run id, as every todo the kit makes does."""
        return f"[{MARK} {self.run_id}] {text}".rstrip()

    def mine(self, title: str) -> bool:
        """Whether a todo is this run's: its title carries the run id."""
        return title.startswith(f"[{MARK} {self.run_id}]")

    def send(
        self,
        method: str,
        path: str,
        user: User | None = None,
        *,
        headers: Headers = (),
        json: Any = None,
        body: bytes | None = None,
        patient: bool = True,
    ) -> Exchange:
        """A request as `user` (None: no identity at all), recording what it creates.
        A target that limits its callers' rate is waited for and asked again, unless
        the check wants to see the 429 itself (`patient=False`)."""
        identity = user.identity() if user is not None else []
        if user is not None:
            self.ledger.enlist(user)
        answer = self.target.request(
            method,
            path,
            headers=[*identity, *headers],
            json_body=json,
            body=body,
            user=None if user is None else user.name,
            patient=patient,
        )
        self.ledger.note(answer)
        return answer

    def created(self, made: Exchange) -> dict[str, Any] | None:
        """The todo a create answered, or None. A todo answered with 200 instead of 201
        is a departure (FR-008) that the kit goes on past: the todo is there."""
        body = made.json_or_none()
        if made.status not in (200, 201) or not isinstance(body, dict):
            return None
        if not isinstance(body.get("id"), str):
            return None
        if made.status == 200:
            self.depart(("FR-008",), "a create answered 200, not 201 Created", made)
        return body

    def status(self, answer: Exchange) -> int:
        """The answer's status, a todo created with 200 read as 201: for the checks of
        other requirements than FR-008, which fails it on its own."""
        return 201 if self.created(answer) is not None else answer.status

    def create(self, user: User, text: str = "todo", **fields: Any) -> dict[str, Any]:
        """A todo the check needs, made by `user`; blocked without it (the create that
        failed is a departure of its own, under FR-008)."""
        made = self.send("POST", TODOS, user, json={"title": self.title(text), **fields})
        body = self.created(made)
        if body is None:
            self.depart(("FR-008",), f"a create answered {made.status} with no todo", made)
            raise Broken(f"could not create a todo to check with: POST answered {made.status}")
        return body

    def read(self, user: User, todo_id: str) -> Exchange:
        return self.send("GET", f"{TODOS}/{todo_id}", user)

    def listed(self, user: User, query: str = "") -> list[dict[str, Any]]:
        answer = self.send("GET", TODOS + query, user)
        body = answer.json_or_none()
        if (
            answer.status != 200
            or not isinstance(body, dict)
            or not isinstance(body.get("items"), list)
        ):
            self.depart(("FR-009",), f"a list answered {answer.status} with no items", answer)
            raise Broken(f"could not read {user.name}'s list: GET answered {answer.status}")
        return list(body["items"])

    def parallel(self, call: Callable[[int], T], count: int) -> list[T]:
        """`call(0)` to `call(count - 1)`, all at once."""
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(call, range(count)))


def missing_id() -> str:
    return str(uuid.uuid4())


def todo_path(todo_id: str) -> str:
    return f"{TODOS}/{todo_id}"


def expect(condition: bool, reason: str, *exchanges: Exchange) -> None:
    if not condition:
        raise Failed(reason, *exchanges)


def problem(exchange: Exchange) -> dict[str, Any] | None:
    """The body as problem details, or None when it is not one (FR-020 says so; other
    checks judge only what is inside the shape)."""
    body = exchange.json_or_none()
    if exchange.media_type != PROBLEM or not isinstance(body, dict):
        return None
    return body


def expect_problem(exchange: Exchange, status: int, code: str | None, what: str) -> dict[str, Any]:
    """`status`, and `code` when the body is problem details at all (whether it is, is
    FR-020's check: a body of another shape does not fail this one)."""
    expect(exchange.status == status, f"{what}: expected {status}, got {exchange.status}", exchange)
    body = problem(exchange) or {}
    if code is not None and "code" in body:
        expect(
            body["code"] == code,
            f"{what}: expected code {code}, got {body.get('code')!r}",
            exchange,
        )
    return body


def named_fields(exchange: Exchange) -> set[str]:
    """The fields a validation problem names (none when the body has no `errors`)."""
    body = problem(exchange) or {}
    errors = body.get("errors")
    if not isinstance(errors, list):
        return set()
    return {e["field"] for e in errors if isinstance(e, dict) and isinstance(e.get("field"), str)}


def expect_invalid(exchange: Exchange, field_name: str, what: str) -> None:
    """422 VALIDATION_ERROR naming `field_name` (when it names fields at all)."""
    expect_problem(exchange, 422, "VALIDATION_ERROR", what)
    names = named_fields(exchange)
    expect(
        not names or field_name in names,
        f"{what}: expected the error to name {field_name!r}, it names {sorted(names)}",
        exchange,
    )


def op(method: str, path: str, *status: int | str) -> str:
    """The contract's location of an operation (and of its answers of `status`), as a
    JSON pointer into openapi.yaml."""
    pointer = f"#/paths/{path.replace('~', '~0').replace('/', '~1')}/{method.lower()}"
    return pointer + "".join(f"/responses/{s}" for s in status)


def schema(name: str) -> str:
    return f"#/components/schemas/{name}"


def parameter(name: str) -> str:
    return f"#/components/parameters/{name}"


def header(name: str) -> str:
    return f"#/components/headers/{name}"


def response(name: str) -> str:
    return f"#/components/responses/{name}"


def scheme(name: str) -> str:
    return f"#/components/securitySchemes/{name}"


@dataclass(frozen=True)
class Check:
    name: str
    ids: tuple[str, ...]
    run: Callable[[Context], None]
    since: str
    writes: bool
    modes: frozenset[str]
    needs: str | None
    clauses: tuple[str, ...]

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)


REGISTRY: list[Check] = []


def check(
    *ids: str,
    clauses: tuple[str, ...] = (),
    since: str = "1.0",
    writes: bool = True,
    modes: tuple[str, ...] = ("header", "bearer"),
    needs: str | None = None,
) -> Callable[[Callable[[Context], None]], Callable[[Context], None]]:
    """Registers a check of `ids`, enforcing `clauses` (op() and schema() locations);
    its docstring's first paragraph is its name in the reports."""

    def register(run: Callable[[Context], None]) -> Callable[[Context], None]:
        name = " ".join((run.__doc__ or run.__name__).split("\n\n")[0].split())
        REGISTRY.append(Check(name, ids, run, since, writes, frozenset(modes), needs, clauses))
        return run

    return register


# Every check registers itself as its module is imported: importing this package imports
# them all, so that REGISTRY is whole wherever it is read.
MODULES = ("cors", "crud", "http", "identity", "isolation", "limits", "pages", "retries",
           "text", "v2_todo", "v2_lists", "v2_summary", "v2_bulk", "validation")  # fmt: skip
for _module in MODULES:
    importlib.import_module(f"{__name__}.{_module}")
