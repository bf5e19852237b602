"""Waiting, with a deadline, for what another process or thread brings about."""

import time
from collections.abc import Callable


def until(
    condition: Callable[[], object],
    seconds: float,
    what: str,
    *,
    ignoring: tuple[type[Exception], ...] = (),
    every: float = 0.05,
) -> None:
    """Until `condition()` is true, asked `every` seconds (an exception of `ignoring`
    counts as not yet); after `seconds`, the test fails naming `what`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if condition():
                return
        except ignoring:
            pass
        assert time.monotonic() < deadline, f"{what} within {seconds} s"
        time.sleep(every)
