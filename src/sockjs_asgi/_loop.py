"""The event loop's clock, events and callbacks, for hot paths.

``anyio.current_time()`` and ``anyio.Event()`` find the running backend at every call, which
costs more than what they then do (on asyncio, ``loop.time()`` and an ``asyncio.Event``, which
anyio's event wraps and which adds a queue and a coroutine per wait).  These do the same with
one look-up, the one sniffio makes: a task of asyncio is running (under trio, even a trio guest
run inside an asyncio loop, none is).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio
from anyio import Event as _AnyioEvent

__all__ = ["Future", "Waiter", "call_soon", "clock", "new_waiter"]


#: What a task waits on until another wakes it: see :func:`new_waiter`.
Waiter = asyncio.Future[None] | anyio.Event

#: The type of a waiter on asyncio (``await`` it; ``set_result(None)`` wakes it); any other
#: waiter is an ``anyio.Event``.
Future = asyncio.Future


def _asyncio_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no asyncio loop running in this thread
        return None


_clock: tuple[asyncio.AbstractEventLoop | None, Callable[[], float]] = (None, anyio.current_time)


def clock() -> Callable[[], float]:
    """What ``anyio.current_time`` reads for the running loop, to be called directly by
    something that reads it often and lives in this loop.  The same object for every caller
    in a loop (every session keeps one)."""
    global _clock
    task = _asyncio_task()
    if task is None:
        return anyio.current_time
    loop = task.get_loop()
    if _clock[0] is not loop:
        _clock = (loop, loop.time)
    return _clock[1]


def call_soon() -> Callable[[Callable[[], object]], object] | None:
    """The running asyncio loop's ``call_soon``: it runs a function from the loop, with no
    task of its own, once the running task yields to the loop.  ``None`` under trio (whose
    nearest call, ``run_sync_soon``, is meant for other threads).  ``run()`` takes it once and
    every session of the service shares it."""
    task = _asyncio_task()
    return None if task is None else task.get_loop().call_soon


def new_waiter() -> Waiter:
    """Something one task waits on until another sets it: on asyncio a bare future of the
    running loop (``await`` it; ``set_result(None)`` wakes it), the smallest thing a task can
    wait for; under trio an ``anyio.Event``."""
    task = _asyncio_task()
    if task is not None:
        return task.get_loop().create_future()
    return _AnyioEvent()
