"""The caller's counts (FR-214): one statement, over the caller's rows alone.

Counted as asked, not kept as writes happen: a count kept by triggers would be one more
row every write locks, and at 1,000 todos the counts cost about what a page of 50 does
(`nox -s bench`). The open todos' tags are counted from todo_tags, whose `tag` the
policy lets an index narrow (migration 0007)."""

from dataclasses import dataclass

from service.db import Database
from service.store import UserId

# `now()` is the moment of the request: the transaction's start, the same in every count.
SUMMARY = """\
SELECT coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0),
       json_build_object(
           'total', count(*),
           'open', count(*) FILTER (WHERE NOT is_completed),
           'completed', count(*) FILTER (WHERE is_completed),
           'overdue', count(*) FILTER (WHERE NOT is_completed AND due_at < now()),
           'by_priority', json_build_object(
               'none', count(*) FILTER (WHERE NOT is_completed AND priority = 'none'),
               'low', count(*) FILTER (WHERE NOT is_completed AND priority = 'low'),
               'medium', count(*) FILTER (WHERE NOT is_completed AND priority = 'medium'),
               'high', count(*) FILTER (WHERE NOT is_completed AND priority = 'high')
           ),
           'by_tag', (
               SELECT coalesce(json_object_agg(tagged.tag, tagged.n ORDER BY tagged.tag),
                               '{}'::json)
               FROM (
                   SELECT todo_tags.tag, count(*) AS n
                   FROM todo_tags JOIN todo_items AS open_todo
                        ON open_todo.id = todo_tags.todo_id
                   WHERE todo_tags.user_id = %(user_id)s
                     AND open_todo.user_id = %(user_id)s
                     AND NOT open_todo.is_completed
                   GROUP BY todo_tags.tag
               ) AS tagged
           )
       )::text
FROM todo_items
WHERE user_id = %(user_id)s"""


@dataclass(frozen=True, slots=True)
class Summary:
    version: int
    json: str


async def summarize(db: Database, user: UserId) -> Summary:
    rows = await db.fetch(user, SUMMARY, {"user_id": str(user)})
    version, body = rows[0]
    return Summary(int(version), body)
