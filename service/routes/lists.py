"""The list's body, `{"items": [...], "count": n}`, whole, as one page (with its
`next_cursor`, and the `Link` to the next page), or streamed in pieces; every way
spells the items with the same bytes."""

from collections.abc import AsyncIterator
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from service.store.todos import Items

# json_agg's separator between elements; a streamed list writes the same bytes.
ITEM_SEPARATOR = ", \n "


def whole(items: Items) -> str:
    return f'{{"items":{items.json},"count":{items.count}}}'


def page(items: Items, next_cursor: str | None) -> str:
    following = "null" if next_cursor is None else f'"{next_cursor}"'
    return f'{{"items":{items.json},"count":{items.count},"next_cursor":{following}}}'


def next_link(path: str, limit: int, cursor: str) -> str:
    return f'<{path}?limit={limit}&cursor={cursor}>; rel="next"'


# What a 2.0 list's next page is asked with: the same filters, sort and limit.
_CARRIED = ("completed", "priority", "tag", "due_after", "due_before", "q", "sort", "limit")


def next_link_v2(path: str, query: QueryParams, cursor: str) -> str:
    carried = [(name, value) for name, value in query.multi_items() if name in _CARRIED]
    return f'<{path}?{urlencode([*carried, ("cursor", cursor)])}>; rel="next"'


async def streamed(batches: AsyncIterator[list[str]]) -> AsyncIterator[str]:
    """The same body as `whole`, from batches of todos' JSON."""
    count = 0
    separator = ""
    yield '{"items":['
    async for batch in batches:
        if batch:
            yield separator + ITEM_SEPARATOR.join(batch)
            separator = ITEM_SEPARATOR
            count += len(batch)
    yield f'],"count":{count}}}'
