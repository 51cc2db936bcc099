"""One way to run a loop on a thread until told to stop: the loop takes a `threading.Event` and returns when it is set."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

_LOGGER = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 30.0


@contextlib.contextmanager
def running_in_thread(
    run: Callable[[threading.Event], object], *, name: str, join_timeout_s: float = JOIN_TIMEOUT_S
) -> Iterator[threading.Thread]:
    """`run(stop)` on a daemon thread for the duration of the block; on exit `stop` is set and the thread joined."""
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(stop,), name=name, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(join_timeout_s)
        if thread.is_alive():
            _LOGGER.warning("%s did not stop within %.0f s", name, join_timeout_s)
