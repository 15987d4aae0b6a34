"""Learn of a server's shutdown when it begins, not when it ends.

ASGI servers send the lifespan shutdown only after every connection has finished, and no
ASGI message tells an open streaming response that the server is stopping: uvicorn waits for
it to end, hypercorn waits its grace period and then cuts it.  A SockJS stream ends only when
its session closes, so without help the server cannot stop promptly.

While :meth:`SockJSApp.run` is active in the main thread, the handlers of SIGINT and SIGTERM
are wrapped: the wrapper asks the event loop to close every session (through
:func:`anyio.from_thread.run_sync` from a short-lived thread, the one way that is safe from a
signal handler on every backend), then calls the server's own handler, which starts its
shutdown as usual.  The previous handlers are put back when ``run()`` ends.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import anyio.from_thread
import anyio.lowlevel

__all__ = ["on_termination"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def on_termination(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` in the event loop when SIGINT or SIGTERM arrives, then the old handler."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    token = anyio.lowlevel.current_token()
    previous: dict[signal.Signals, Callable[[int, FrameType | None], object] | int | None] = {}

    def run_callback() -> None:
        with contextlib.suppress(anyio.RunFinishedError):  # the loop ended meanwhile
            anyio.from_thread.run_sync(callback, token=token)

    def handler(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=run_callback, name="sockjs-asgi shutdown", daemon=True).start()
        old = previous.get(signal.Signals(signum))
        if callable(old):
            old(signum, frame)
        elif old in (signal.SIG_DFL, None):
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    for signum in SIGNALS:
        previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            if signal.getsignal(signum) is handler:
                signal.signal(signum, old if old is not None else signal.SIG_DFL)
