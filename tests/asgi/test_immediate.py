"""``_immediate.start``: a call that completes at once costs no suspension; one that would wait
is finished by the same task exactly as ``await`` would, results, errors and cancellation alike."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from sockjs_asgi._immediate import start

pytestmark = pytest.mark.anyio

steps: list[str] = []


async def at_once() -> str:
    steps.append("ran")
    return "done"


async def waits(event: anyio.Event) -> None:
    steps.append("started")
    await event.wait()
    steps.append("finished")


async def fails_after_waiting() -> None:
    await anyio.lowlevel.checkpoint()
    raise ValueError("boom")


class YieldsFromAGenerator:
    """An awaitable that is not a coroutine but whose ``__await__`` is a generator."""

    def __await__(self) -> Generator[Any, Any, None]:
        yield from anyio.lowlevel.checkpoint().__await__()
        steps.append("generator")


class PlainIterator:
    """An awaitable whose ``__await__`` is a bare iterator, which cannot be stepped."""

    def __await__(self) -> Any:
        steps.append("iterator")
        return iter(())


async def test_a_call_that_completes_at_once_needs_no_await() -> None:
    steps.clear()
    assert start(at_once()) is None
    assert steps == ["ran"]


async def test_a_call_that_would_wait_is_finished_by_awaiting_what_start_returns() -> None:
    steps.clear()
    event = anyio.Event()
    async with anyio.create_task_group() as task_group:
        rest = start(waits(event))
        assert rest is not None and steps == ["started"]

        async def later() -> None:
            await anyio.wait_all_tasks_blocked()
            assert steps == ["started"]
            event.set()

        task_group.start_soon(later)
        await rest  # in the task that started it, as start() requires
    assert steps == ["started", "finished"]


async def test_errors_reach_the_awaiting_task() -> None:
    rest = start(fails_after_waiting())
    assert rest is not None
    with pytest.raises(ValueError, match="boom"):
        await rest


async def test_cancellation_reaches_the_call() -> None:
    steps.clear()
    rest = start(waits(anyio.Event()))
    assert rest is not None
    with anyio.move_on_after(0.01) as scope:
        await rest
    assert scope.cancelled_caught and steps == ["started"]


async def test_other_awaitables() -> None:
    steps.clear()
    rest = start(YieldsFromAGenerator())
    assert rest is not None
    await rest
    assert steps == ["generator"]
    rest = start(PlainIterator())
    assert rest is not None
    await rest
    assert steps == ["generator", "iterator"]
