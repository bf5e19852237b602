"""A worker's shutdown, drained. On SIGTERM readiness answers 503 at once, so that a
load balancer stops sending this process requests, while the listener keeps accepting
for TODO_SHUTDOWN_GRACE_SECONDS; then uvicorn's own shutdown closes the listener and
lets the requests in flight finish. Answers given meanwhile close their connection, so
that no client still holds an idle keep-alive connection when the listener closes: one
closed under a request it is sending would reset it.

uvicorn closes the listener as soon as it hears SIGTERM; its handler is installed
before the app is built, so the worker takes it over here, and calls it once the grace
is over. A second SIGTERM calls it at once."""

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger("service.draining")

started = threading.Event()


def drain_on_sigterm(grace_seconds: float) -> None:
    """In a worker's main thread, while uvicorn handles SIGTERM; elsewhere nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    uvicorn_handler = signal.getsignal(signal.SIGTERM)
    if not callable(uvicorn_handler):
        return
    stop = uvicorn_handler

    def drain(signum: int, frame: FrameType | None) -> None:
        if started.is_set():
            stop(signum, frame)
            return
        started.set()
        log.info("SIGTERM: draining", extra={"grace_s": grace_seconds})
        if not grace_seconds:
            stop(signum, frame)
            return
        closing = threading.Timer(grace_seconds, stop, (signum, None))
        closing.daemon = True
        closing.start()

    signal.signal(signal.SIGTERM, drain)
