"""The list's body, `{"items": [...], "count": n}`, whole, as one page (with its
`next_cursor`, and the `Link` to the next page), or streamed in pieces; every way
spells the items with the same bytes."""

from collections.abc import AsyncIterator

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
