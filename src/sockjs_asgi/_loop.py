"""The event loop's clock and events, for hot paths.

``anyio.current_time()`` and ``anyio.Event()`` find the running backend at every call, which
costs more than what they then do (on asyncio, ``loop.time()`` and an ``asyncio.Event``, which
anyio's event wraps).  These do the same with one look-up, the one sniffio makes: a task of
asyncio is running (under trio, even a trio guest run inside an asyncio loop, none is).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import anyio

__all__ = ["Event", "clock", "new_event"]


class Event(Protocol):
    """What both ``asyncio.Event`` and ``anyio.Event`` offer."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    async def wait(self) -> object: ...


def _asyncio_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no asyncio loop running in this thread
        return None


def clock() -> Callable[[], float]:
    """What ``anyio.current_time`` reads for the running loop, to be called directly by
    something that reads it often and lives in this loop."""
    task = _asyncio_task()
    if task is not None:
        return task.get_loop().time
    return anyio.current_time


def new_event() -> Event:
    """``anyio.Event()``: on asyncio, the ``asyncio.Event`` that anyio's would wrap."""
    if _asyncio_task() is not None:
        return asyncio.Event()
    return anyio.Event()
