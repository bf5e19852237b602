"""Where the seeded data lives: ids are computed from numbers, so wrk's Lua scripts and
pgbench's scripts can name any seeded todo and its owner without a lookup.

Todo n (1..1,000,000) has id 00000000-0000-4000-8000-<n in hex>. Users are numbered
1..10,000 the same way under ...-9000-...:
- user 1 owns todos 1..100,000 (the 100,000-todo user),
- user 2 owns 100,001..101,000 (1,000), user 3 owns 101,001..101,010 (10),
- users 4..10,000 share the rest, todo n going to user 4 + (n - 101,011) % 9,997.

One more user is named by a token (jwt mode): subject TOKEN_SUBJECT of TOKEN_ISSUER,
whose id is derived as the service derives it; they own todos TOKEN_TODOS.
"""

from dataclasses import dataclass

USERS = 10_000
HUGE, THOUSAND, TEN = 1, 2, 3
REST_FIRST = 101_011
REST_USERS = USERS - 3
FULL_TABLE = 1_000_000


@dataclass(frozen=True)
class Range:
    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def halves(self) -> tuple["Range", "Range"]:
        """Reads and patches pick from the first half; deletes walk the second."""
        half = (self.first + self.last) // 2
        return Range(self.first, half), Range(half + 1, self.last)


def todo_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012x}"


def user_id(k: int) -> str:
    return f"00000000-0000-4000-9000-{k:012x}"


def owner(n: int) -> int:
    if n <= 100_000:
        return HUGE
    if n <= 101_000:
        return THOUSAND
    if n < REST_FIRST:
        return TEN
    return 4 + (n - REST_FIRST) % REST_USERS


# The todos of users 4..10,000 at each growth stage: 8,990 of them while the table holds
# 10,000 rows, 898,990 at 1,000,000.
REST_SMALL = Range(REST_FIRST, 110_000)
REST_FULL = Range(REST_FIRST, FULL_TABLE)

TOKEN_ISSUER = "https://auth.bench.example"
TOKEN_SUBJECT = "7t7pam4TD32SKNTbOGv6nqhGuKTXxgjj"  # shaped like a Better Auth user id
TOKEN_TODOS = Range(2_000_001, 2_010_000)


# SQL spellings of the same ids, for seeding and for pgbench.
SQL_TODO_ID = "('00000000-0000-4000-8000-' || lpad(to_hex({n}), 12, '0'))::uuid"
SQL_USER_ID = "('00000000-0000-4000-9000-' || lpad(to_hex({k}), 12, '0'))"
SQL_OWNER = (
    "CASE WHEN {n} <= 100000 THEN 1 WHEN {n} <= 101000 THEN 2 WHEN {n} < 101011 THEN 3"
    " ELSE 4 + ({n} - 101011) % 9997 END"
)
