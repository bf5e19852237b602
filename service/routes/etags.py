"""Entity tags (RFC 9110 §8.8.3) and the If-Match / If-None-Match conditions that
carry them.

A todo's tag is its `updated_at` in microseconds since the epoch: every successful
update moves `updated_at` strictly forward, so the tag changes exactly when the todo
does, and PostgreSQL can compare it inside the write itself. The list's tag is the
caller's id and their list version, which every write to their todos bumps: no other
user's tag can ever match it."""

import re
import uuid
from dataclasses import dataclass

from service.errors import FieldError, validation_failed

# Room for hundreds of entity tags; the contract bounds the header to this (FR-153).
CONDITION_MAX = 8192
# One element of an entity-tag list: [W/] DQUOTE *etagc DQUOTE.
_ELEMENT = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*(?:,|$)')
_ITEM = re.compile(r"[0-9]{1,18}")


def item_tag(updated_at_us: int) -> str:
    return f'"{updated_at_us}"'


def list_tag(user: uuid.UUID, version: int) -> str:
    return f'"{user.hex}-{version}"'


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed If-Match or If-None-Match: `*`, or the opaque tags listed."""

    any: bool
    strong: tuple[str, ...]
    weak: tuple[str, ...]

    def _opaque(self, weak_comparison: bool) -> tuple[str, ...]:
        # If-Match compares strongly: a weak tag never matches (RFC 9110 §13.1.1).
        return self.strong + self.weak if weak_comparison else self.strong

    def matches(self, etag: str, *, weak_comparison: bool) -> bool:
        """Whether this condition names `etag` (one of ours, always strong)."""
        return self.any or etag[1:-1] in self._opaque(weak_comparison)

    def item_versions(self, *, weak_comparison: bool) -> list[int]:
        """The todo versions (updated_at in microseconds) this condition names."""
        return [int(tag) for tag in self._opaque(weak_comparison) if _ITEM.fullmatch(tag)]

    def list_versions(self, user: uuid.UUID) -> list[int]:
        """The versions of `user`'s list this condition names (strongly: it is an
        If-Match's); another user's list tag names none."""
        mine = f"{user.hex}-"
        return [
            int(tag.removeprefix(mine))
            for tag in self.strong
            if tag.startswith(mine) and _ITEM.fullmatch(tag.removeprefix(mine))
        ]


def parse_condition(values: list[str], header: str) -> Condition | None:
    """None when the header is absent. Repeated lines are one list (RFC 9110 §5.3);
    elements that are not entity-tags are ignored, so they match nothing."""
    if not values:
        return None
    joined = ",".join(values)
    if len(joined) > CONDITION_MAX:
        raise validation_failed([FieldError(header, f"must be at most {CONDITION_MAX} characters")])
    if joined.strip() == "*":
        return Condition(any=True, strong=(), weak=())
    strong: list[str] = []
    weak: list[str] = []
    position = 0
    while position < len(joined):
        element = _ELEMENT.match(joined, position)
        if element is None:
            # Skip a malformed element up to the next comma.
            comma = joined.find(",", position)
            position = len(joined) if comma < 0 else comma + 1
            continue
        (weak if element.group(1) else strong).append(element.group(2))
        position = element.end()
    return Condition(any=False, strong=tuple(strong), weak=tuple(weak))
