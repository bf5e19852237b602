"""What a person watching a run sees on stderr while it runs: the phase, the checks
done, the requests sent (fuzzing included); on a terminal one line kept up to date and
in colour (unless NO_COLOR is set), elsewhere (a CI log) a line at each phase and every
few seconds."""

import os
import sys
import threading
from collections.abc import Callable
from typing import TextIO

_COLOURS = {"green": "32", "red": "31", "yellow": "33", "bold": "1", "dim": "2"}


def colour_wanted(stream: TextIO) -> bool:
    """https://no-color.org: NO_COLOR set (to anything) means none; else a terminal."""
    return "NO_COLOR" not in os.environ and stream.isatty()


def paint(text: str, colour: str, on: bool) -> str:
    return f"\033[{_COLOURS[colour]}m{text}\033[0m" if on else text


class Progress:
    """`requests` reads how many requests have been sent so far."""

    def __init__(self, requests: Callable[[], int], stream: TextIO = sys.stderr) -> None:
        self._requests = requests
        self._stream = stream
        self._live = stream.isatty()
        self.colour = colour_wanted(stream)
        self._phase = "starting"
        self._done = 0
        self._total = 0
        self._extra: Callable[[], str] | None = None
        self._shown = ""
        self._width = 0
        self._lock = threading.RLock()
        self._stopped = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
        self._ticker.start()

    def phase(self, name: str, total: int = 0, extra: Callable[[], str] | None = None) -> None:
        """A phase begins (`total` steps, if it counts them; `extra` says more)."""
        with self._lock:
            self._phase, self._done, self._total, self._extra = name, 0, total, extra
        self._show(force=True)

    def step(self) -> None:
        with self._lock:
            self._done += 1
        if self._live:
            self._show()

    def _line(self) -> str:
        with self._lock:
            counted = f" {self._done}/{self._total}" if self._total else ""
            extra = f", {self._extra()}" if self._extra is not None else ""
            return f"{self._phase}{counted}{extra}, {self._requests()} requests sent"

    def _show(self, force: bool = False) -> None:
        line = self._line()
        if line == self._shown and not force:
            return
        with self._lock:
            if self._stopped.is_set():
                return
            width, self._width = self._width, len(line)
            self._shown = line
            if self._live:
                # Back to the start of the line, over what was there (no escape but colour).
                self._stream.write(
                    "\r" + paint(line, "dim", self.colour) + " " * (width - len(line))
                )
            else:
                self._stream.write(f"todo-conformance: {line}\n")
            self._stream.flush()

    def _tick(self) -> None:
        # On a terminal the line moves with every step; elsewhere every five seconds.
        every = 0.5 if self._live else 5.0
        while not self._stopped.wait(every):
            self._show()

    def stop(self) -> None:
        """No more progress: on a terminal, its line is wiped for what follows."""
        with self._lock:
            self._stopped.set()
            if self._live and self._width:
                self._stream.write("\r" + " " * self._width + "\r")
                self._stream.flush()
                self._width = 0

    def say(self, line: str) -> None:
        """A line of its own (the verdict), after the progress has stopped."""
        self.stop()
        self._stream.write(line + "\n")
        self._stream.flush()
