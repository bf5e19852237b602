"""What the kit created, so that it can delete it all at the end, and the measure of how
that went: every todo a create named, under the user who made it, whether a check or
the fuzzer made it; then every user the kit acted as, searched for anything carrying
the run's id; then each of them listed again, to count what is still there.

A run that was stopped can have a create still on its way when cleanup begins (the
target had not answered it, or the interrupt caught a thread of the kit starting): its
todo lands after the search. So what is still listed is deleted again, a few times,
a little later each time, before it is counted as left."""

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from todo_conformance.target import Exchange, Target, Unreachable
from todo_conformance.users import User

TODOS = "/api/v1/todos"
# Deletes sent at once at the end (--max-rps still paces them).
AT_ONCE = 8
# The waits before each new attempt at what is still listed, in seconds.
AGAIN_AFTER = (0.5, 1.0, 2.0)


@dataclass
class Cleanup:
    """How the end of a run went, as measured by listing every user again afterwards:
    `created` todos (made, or found carrying the run's id), `left` the ones still there,
    by id, and `deleted` the rest, so that created = deleted + left."""

    created: int = 0
    left: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def deleted(self) -> int:
        return self.created - len(self.left)

    @property
    def completed(self) -> bool:
        return not self.left and not self.problems

    def line(self) -> str:
        said = f"cleanup: created {self.created}, deleted {self.deleted}, left {len(self.left)}"
        if self.left:
            said += (
                " (" + ", ".join(self.left[:10]) + (", ..." if len(self.left) > 10 else "") + ")"
            )
        if self.problems:
            said += "; " + "; ".join(self.problems[:3])
        return said


class Ledger:
    def __init__(self) -> None:
        self._made: dict[str, str] = {}  # todo id -> the name of the user who made it
        self._users: dict[str, User] = {}
        self._lock = threading.Lock()

    def enlist(self, user: User) -> None:
        """A user the kit acts as: cleanup visits every one, not only the run's four."""
        with self._lock:
            self._users.setdefault(user.name, user)

    def record(self, user: str, todo_id: str) -> None:
        with self._lock:
            self._made.setdefault(todo_id.lower(), user)

    def note(self, exchange: Exchange) -> None:
        """Records the todo a create named, if this was one (201, or a 200 carrying the
        todo: a departure, but a todo all the same)."""
        if exchange.method == "POST" and exchange.status in (200, 201) and exchange.user:
            body = exchange.json_or_none()
            if isinstance(body, dict) and isinstance(body.get("id"), str):
                self.record(exchange.user, body["id"])

    @property
    def count(self) -> int:
        return len(self._made)

    def clean(
        self,
        target: Target,
        mine: Callable[[str], bool],
        depart: Callable[[str, Exchange], None],
    ) -> Cleanup:
        """Deletes every todo made, as its maker; then, user by user, every todo whose
        title carries the run's id; then lists every user again and counts what is left.
        A delete the target refuses, or answers and ignores, is a departure (`depart`)."""
        users = list(self._users.values())
        problems: list[str] = []
        answered: dict[str, Exchange] = {}
        self._delete_all(target, sorted(self._made.items()), depart, problems, answered)
        for user in users:
            try:
                found = [t["id"].lower() for t in _listed(target, user) if mine(t["title"])]
            except (Unreachable, ValueError) as error:
                problems.append(f"user {user.name}: {error}")
                continue
            for todo in found:
                if todo not in self._made:
                    self.record(user.name, todo)
                    self._delete(target, user, todo, depart, problems, answered)
        left = self._still_listed(target, users, mine, problems)
        for pause in AGAIN_AFTER:
            if not left:
                break
            time.sleep(pause)
            again = [(todo, self._made[todo]) for todo in sorted(left)]
            self._delete_all(target, again, depart, problems, answered)
            left = self._still_listed(target, users, mine, problems)
        for todo in sorted(left):
            if todo in answered:
                depart("a delete answered 204, and the todo is still listed", answered[todo])
        return Cleanup(len(self._made), [f"{self._made[t]}: {t}" for t in sorted(left)], problems)

    def _delete_all(
        self,
        target: Target,
        todos: list[tuple[str, str]],
        depart: Callable[[str, Exchange], None],
        problems: list[str],
        answered: dict[str, Exchange],
    ) -> None:
        """Each (todo, maker) deleted as its maker, several at once."""
        with ThreadPoolExecutor(AT_ONCE) as deleting:
            sent = [
                deleting.submit(
                    self._delete, target, self._users[maker], todo, depart, problems, answered
                )
                for todo, maker in todos
            ]
            for each in sent:
                each.result()

    def _still_listed(
        self,
        target: Target,
        users: list[User],
        mine: Callable[[str], bool],
        problems: list[str],
    ) -> set[str]:
        """What each user's list still holds of the run's, each under who lists it."""
        left: set[str] = set()
        for user in users:
            try:
                listed = _listed(target, user)
            except (Unreachable, ValueError) as error:
                problems.append(f"user {user.name}, listed again: {error}")
                continue
            for todo in listed:
                found = todo["id"].lower()
                if found in self._made or mine(todo["title"]):
                    self.record(user.name, found)
                    left.add(found)
        return left

    @staticmethod
    def _delete(
        target: Target,
        user: User,
        todo: str,
        depart: Callable[[str, Exchange], None],
        problems: list[str],
        answered: dict[str, Exchange],
    ) -> None:
        try:
            gone = target.request(
                "DELETE", f"{TODOS}/{todo}", headers=user.identity(), user=user.name
            )
        except Unreachable as error:
            problems.append(f"user {user.name}: {error}")
            return
        if gone.status == 204:
            answered[todo] = gone
        elif gone.status != 404:
            depart(f"a delete answered {gone.status}", gone)


def _listed(target: Target, user: User) -> list[dict[str, str]]:
    answer = target.request("GET", TODOS, headers=user.identity(), user=user.name)
    if answer.status != 200:
        raise ValueError(f"GET {TODOS} answered {answer.status}")
    body = answer.json_or_none()
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise ValueError(f"GET {TODOS} answered no list")
    return [
        {"id": t["id"], "title": str(t.get("title", ""))}
        for t in body["items"]
        if isinstance(t, dict) and isinstance(t.get("id"), str)
    ]
