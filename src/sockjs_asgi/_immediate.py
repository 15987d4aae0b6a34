"""Run a coroutine's first step in the caller's task, to learn whether it would wait.

A broadcast writes to idle websockets itself instead of waking a task per receiver, but it must
not let one slow client hold up the others.  An ASGI ``send`` to a socket with room completes
without suspending; one to a full socket suspends.  :func:`start` runs the call up to that
point: either it completed, or the caller gets an awaitable that finishes it.  That awaitable is
the rest of the same call, in the same task, so it behaves exactly as ``await`` would have
(cancellation included) on any event loop; the caller only gets a chance to hand its other
receivers to their own tasks before it waits.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Generator, Iterator
from typing import Any

__all__ = ["start"]


def start(awaitable: Awaitable[object]) -> Awaitable[None] | None:
    """Run ``awaitable`` until it completes or first suspends; its result is dropped.

    Returns ``None`` if it completed, else an awaitable that the caller must await next, in the
    same task, to finish it.
    """
    if type(awaitable) is types.CoroutineType:  # the usual case, checked first as it is cheap
        steps: Any = awaitable
    else:
        steps = awaitable.__await__()
        if not isinstance(steps, Generator):  # futures' are; a bare iterator cannot be stepped
            return _whole(steps)
    try:
        yielded = steps.send(None)
    except StopIteration:
        return None
    return _rest(steps, yielded)


@types.coroutine
def _whole(steps: Iterator[Any]) -> Generator[Any, Any, None]:
    yield from steps


@types.coroutine
def _rest(coro: Generator[Any, Any, object], yielded: Any) -> Generator[Any, Any, None]:
    # What "yield from coro" does after its first step: pass what the coroutine yields to the
    # event loop, and what the event loop sends or throws back to the coroutine.
    while True:
        try:
            value = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                yielded = coro.send(value)
            except StopIteration:
                return
