"""Many client sessions at once, and the check of a round of broadcasts among them."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup

from .client import TIMEOUT, Session


@dataclass
class Crowd:
    """Client sessions, each receiving in a task of its own."""

    url: str
    task_group: TaskGroup
    sessions: list[Session] = field(default_factory=list)

    async def open(self, sessions: list[Session]) -> None:
        self.sessions += sessions
        for session in sessions:
            self.task_group.start_soon(session.run)
        with anyio.fail_after(TIMEOUT):
            for session in sessions:
                await session.wait_open()

    def name(self, session: Session) -> int:
        return self.sessions.index(session)

    async def send_round(self, senders: list[Session], tag: str, count: int) -> None:
        """Every sender sends ``count`` messages ``<sender>:<tag>:<n>``, one request each, in order."""

        async def send_all(session: Session) -> None:
            for number in range(count):
                await session.send(f"{self.name(session)}:{tag}:{number}")

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                for session in senders:
                    task_group.start_soon(send_all, session)

    async def wait_received(self, receivers: list[Session], tag: str, expected: dict[int, int]) -> None:
        """Wait until each receiver has ``expected[i]`` messages tagged ``tag``, receiver i."""
        with anyio.fail_after(TIMEOUT):
            for index, session in enumerate(receivers):
                await session.wait_for(lambda s, want=expected[index]: s.by_tag[tag] >= want)


@dataclass
class Delivery:
    """How one round of broadcasts arrived."""

    expected: int = 0
    delivered: int = 0
    duplicates: int = 0
    reordered: int = 0
    missing: int = 0

    def __str__(self) -> str:
        percent = 100 * self.delivered / self.expected if self.expected else 100.0
        return (
            f"{self.delivered}/{self.expected} delivered ({percent:.1f}%), {self.duplicates} duplicates, "
            f"{self.reordered} out of order, {self.missing} missing"
        )


def delivery(crowd: Crowd, senders: list[Session], receivers: list[Session], tag: str, count: int) -> Delivery:
    """Compare what each receiver got from each sender with ``0..count-1`` in order."""
    result = Delivery()
    names = {crowd.name(sender) for sender in senders}
    for receiver in receivers:
        by_sender: dict[int, list[int]] = {name: [] for name in names}
        for message in receiver.received:
            sender, message_tag, number = message.split(":")
            if message_tag == tag:
                by_sender[int(sender)].append(int(number))
        for numbers in by_sender.values():
            result.expected += count
            unique = set(numbers)
            result.delivered += len(unique & set(range(count)))
            result.duplicates += len(numbers) - len(unique)
            result.missing += len(set(range(count)) - unique)
            result.reordered += sum(1 for a, b in itertools.pairwise(numbers) if b < a)
    return result


def misrouted(sessions: list[Session]) -> list[Session]:
    return [session for session in sessions if session.misrouted]


def report(title: str, **lines: object) -> None:
    print(f"\n== {title}")
    for name, value in lines.items():
        print(f"   {name.replace('_', ' ')}: {value}")


async def full_round(crowd: Crowd, senders: list[Session], receivers: list[Session], tag: str, count: int) -> Delivery:
    """A round in which every receiver must get every sender's messages."""
    await crowd.send_round(senders, tag, count)
    await crowd.wait_received(receivers, tag, dict.fromkeys(range(len(receivers)), len(senders) * count))
    return delivery(crowd, senders, receivers, tag, count)
