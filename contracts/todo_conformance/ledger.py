"""What the kit created, so that it can delete it all at the end: every todo a 201
named, under the user who made it, whether a check or the fuzzer made it."""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from todo_conformance.target import Exchange, Target, Unreachable
from todo_conformance.users import User

TODOS = "/api/v1/todos"


@dataclass
class Cleanup:
    """How the end of a run went: `completed` only when every todo the kit made, and
    every todo of its users that carries the run id, is gone."""

    created: int = 0
    deleted: int = 0
    left: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        return not self.left and not self.problems


class Ledger:
    def __init__(self) -> None:
        self._made: dict[str, set[str]] = {}
        self._users: dict[str, User] = {}
        self._lock = threading.Lock()

    def enlist(self, user: User) -> None:
        """A user the kit acts as: cleanup visits every one, not only the run's four."""
        with self._lock:
            assert self._users.setdefault(user.name, user) is user, f"two users {user.name}"

    def record(self, user: str, todo_id: str) -> None:
        with self._lock:
            self._made.setdefault(user, set()).add(todo_id.lower())

    def note(self, exchange: Exchange) -> None:
        """Records the todo a successful create named, if this was one."""
        if exchange.method == "POST" and exchange.status == 201 and exchange.user:
            body = exchange.json_or_none()
            if isinstance(body, dict) and isinstance(body.get("id"), str):
                self.record(exchange.user, body["id"])

    @property
    def count(self) -> int:
        return sum(len(ids) for ids in self._made.values())

    def clean(self, target: Target, mine: Callable[[str], bool]) -> Cleanup:
        """Deletes every recorded todo, then every todo of the kit's users that `mine`
        recognises (its title holds the run id); then looks again."""
        outcome = Cleanup(created=self.count)
        for user in list(self._users.values()):
            recorded = set(self._made.get(user.name, set()))
            try:
                listed = _listed(target, user)
                recorded |= {t["id"].lower() for t in listed if mine(str(t.get("title", "")))}
                for todo in sorted(recorded):
                    gone = target.request(
                        "DELETE", f"{TODOS}/{todo}", headers=user.identity(), user=user.name
                    )
                    if gone.status == 204:
                        outcome.deleted += 1
                    elif gone.status != 404:
                        outcome.problems.append(
                            f"user {user.name}: DELETE {todo} answered {gone.status}"
                        )
                remaining = {t["id"].lower() for t in _listed(target, user)}
            except (Unreachable, ValueError) as error:
                outcome.problems.append(f"user {user.name}: {error}")
                continue
            outcome.left += [f"{user.name}: {todo}" for todo in sorted(recorded & remaining)]
        return outcome


def _listed(target: Target, user: User) -> list[dict[str, str]]:
    answer = target.request("GET", TODOS, headers=user.identity(), user=user.name)
    if answer.status != 200:
        raise ValueError(f"GET {TODOS} answered {answer.status}")
    body = answer.json_or_none()
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise ValueError(f"GET {TODOS} answered no list")
    return [t for t in body["items"] if isinstance(t, dict) and isinstance(t.get("id"), str)]
