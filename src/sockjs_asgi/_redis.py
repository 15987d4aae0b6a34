"""``RedisBroker``: broadcasts between processes and machines over Redis pub/sub.

Needs the optional dependency: ``pip install 'sockjs-asgi[redis]'`` (redis-py).

Guarantees
----------
While Redis is reachable, every publication reaches every subscribed process once, in the order
the publishing process published (one connection publishes, one subscribes; Redis keeps the
order of each connection).  Redis pub/sub keeps nothing for a subscriber that is not connected,
so across an outage delivery is *at most once*: a broadcast published while this process or
another one is cut off from Redis is lost for the processes it did not reach.  It is never
delivered twice (redis-py's own retries are turned off: a retried PUBLISH whose first reply was
lost would arrive twice).

Outages
-------
Publishing never waits and never raises into a handler.  While Redis is unreachable the
broadcast still reaches this process's connections; what it would have published is dropped
and counted (``broker_dropped_total``), and the loss is logged once per outage.  The
subscription reconnects with exponential backoff (``reconnect_delay`` doubling up to
``max_reconnect_delay``, with jitter), subscribes again, and publishing resumes by itself.
A connection that goes silent (a vanished host sends no FIN) is noticed by a PING after
``health_check_interval`` seconds without traffic.

redis-py's asyncio client runs on asyncio only: on trio, :meth:`RedisBroker.connect` (and so
``SockJSApp.run()``, at server start-up) raises :class:`RuntimeError` saying so.
"""

from __future__ import annotations

import logging
import random
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ._broker import Broker, BrokerLink, Deliver, RecordsUnavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._metrics import Metrics

__all__ = ["RedisBroker"]

logger = logging.getLogger("sockjs_asgi.broker")

SCHEMES = ("redis", "rediss", "unix")

T = TypeVar("T")

# Remove a record only if it still holds the value this process stored (it may have expired and
# been claimed again since).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class RedisBroker(Broker):
    """Reach the other processes of a service through Redis pub/sub.

    ``url`` is a ``redis://`` or ``rediss://`` (TLS) URL as redis-py takes it, for example
    ``redis://:password@redis.internal:6379/0``.  ``channel`` names the service: every process
    whose app has a ``RedisBroker`` on the same Redis and channel is an instance of the same
    service, so give each service its own channel (Redis pub/sub channels ignore the database
    number).  ``max_queued`` bounds the publications waiting to be sent; beyond it they are
    dropped and counted.  ``client_options`` go to ``redis.asyncio.Redis.from_url``.

    One ``RedisBroker`` serves one :class:`SockJSApp`.
    """

    def __init__(
        self,
        url: str,
        *,
        channel: str = "sockjs-asgi",
        max_queued: int = 10_000,
        reconnect_delay: float = 0.1,
        max_reconnect_delay: float = 5.0,
        health_check_interval: float = 10.0,
        connect_timeout: float = 5.0,
        **client_options: Any,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:
            raise ImportError("RedisBroker needs redis-py: pip install 'sockjs-asgi[redis]'") from None
        if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in SCHEMES:
            raise ValueError(f"url must be a redis://, rediss:// or unix:// URL, got {url!r}")
        if not isinstance(channel, str) or not channel:
            raise ValueError(f"channel must be a non-empty str, got {channel!r}")
        for name, value in (
            ("reconnect_delay", reconnect_delay),
            ("max_reconnect_delay", max_reconnect_delay),
            ("health_check_interval", health_check_interval),
            ("connect_timeout", connect_timeout),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if isinstance(max_queued, bool) or not isinstance(max_queued, int) or max_queued <= 0:
            raise ValueError(f"max_queued must be a positive int, got {max_queued!r}")
        self.url = url
        self.channel = channel
        self.max_queued = max_queued
        self.reconnect_delay = float(reconnect_delay)
        self.max_reconnect_delay = max(float(max_reconnect_delay), self.reconnect_delay)
        self.health_check_interval = float(health_check_interval)
        self.connect_timeout = float(connect_timeout)
        self.client_options = client_options
        self._in_use = False

    def __repr__(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or parts.path  # no password in logs
        return f"<RedisBroker {parts.scheme}://{host}{f':{parts.port}' if parts.port else ''} channel={self.channel!r}>"

    def channel_of(self, topic: str) -> str:
        """The Redis channel that carries ``topic``."""
        return f"{self.channel}:{topic}"

    @asynccontextmanager
    async def connect(self, topics: Collection[str], deliver: Deliver, metrics: Metrics) -> AsyncIterator[BrokerLink]:
        import sniffio

        library = sniffio.current_async_library()
        if library != "asyncio":
            raise RuntimeError(
                f"RedisBroker runs on asyncio only (redis-py's asyncio client cannot run on {library}): "
                "serve this app on asyncio (uvicorn; hypercorn --worker-class asyncio), or pass a "
                "broker that runs on trio"
            )
        if self._in_use:
            raise RuntimeError(f"{self!r} already serves a running app: give each SockJSApp its own RedisBroker")
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        options: dict[str, Any] = {
            "socket_connect_timeout": self.connect_timeout,
            "socket_keepalive": True,
            **self.client_options,
            # No retries inside redis-py: a PUBLISH retried after a lost reply would arrive twice.
            "retry": Retry(NoBackoff(), 0),
        }
        client = Redis.from_url(self.url, **options)
        link = _RedisLink(self, client, {self.channel_of(topic): topic for topic in topics}, deliver, metrics)
        self._in_use = True
        try:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(link.subscribe_forever)
                task_group.start_soon(link.publish_forever)
                # Serve once subscribed, so that the first broadcasts already reach everyone;
                # if Redis is down, serve anyway (local delivery works) and keep trying.
                with anyio.move_on_after(self.connect_timeout):
                    await link.first_attempt.wait()
                try:
                    yield link
                finally:
                    # What was published last (a shutting-down process's last broadcasts and
                    # answers) still goes out, for a moment at most.
                    with anyio.move_on_after(1, shield=True):
                        await link.flushed()
                    task_group.cancel_scope.cancel()
        finally:
            self._in_use = False
            metrics.broker_connected = 0
            with anyio.CancelScope(shield=True), suppress(Exception):
                await client.aclose()


class _RedisLink(BrokerLink):
    def __init__(
        self, broker: RedisBroker, client: Redis, topics: dict[str, str], deliver: Deliver, metrics: Metrics
    ) -> None:
        self._broker = broker
        self._client = client
        self._topics = topics  # Redis channel -> topic
        self._deliver = deliver
        self._metrics = metrics
        self._queue: deque[tuple[str, bytes]] = deque()
        self._wakeup = anyio.Event()
        self._sending = False
        self._batch_done = anyio.Event()
        self._is_up = False
        self._dropping_logged = False
        self._down_since: float | None = None
        self._dropped_at_down = 0
        self.first_attempt = anyio.Event()

    @property
    def is_connected(self) -> bool:
        return self._is_up

    # -- records: keys under "<channel>:", on the client's pool of connections ---------------

    def _key(self, key: str) -> str:
        return f"{self._broker.channel}:{key}"

    async def _call(self, call: Awaitable[T]) -> T:
        from redis.exceptions import RedisError

        try:
            with anyio.fail_after(self._broker.connect_timeout):
                return await call
        except (RedisError, OSError, TimeoutError) as exc:
            raise RecordsUnavailable(f"{self._broker!r}: {exc or type(exc).__name__}") from exc

    async def claim(self, key: str, value: bytes, ttl: float) -> bytes | None:
        milliseconds = max(1, int(ttl * 1000))
        for _ in range(3):  # the holder may release it between our SET and GET
            if await self._call(self._client.set(self._key(key), value, nx=True, px=milliseconds)):
                return None
            held = await self._call(self._client.get(self._key(key)))
            if held is not None:
                return held if isinstance(held, bytes) else held.encode()
        raise RecordsUnavailable(f"{key!r} changed hands three times during one claim")

    async def load(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = await self._call(self._client.mget([self._key(key) for key in keys]))
        return [value.encode() if isinstance(value, str) else value for value in values]

    async def store(self, records: Mapping[str, bytes], ttl: float) -> None:
        if not records:
            return
        milliseconds = max(1, int(ttl * 1000))
        pipe = self._client.pipeline(transaction=False)
        for key, value in records.items():
            pipe.set(self._key(key), value, px=milliseconds)
        await self._call(pipe.execute())

    async def release(self, key: str, value: bytes) -> None:
        await self._call(self._client.eval(_RELEASE, 1, self._key(key), value))

    def publish(self, topic: str, payload: bytes) -> None:
        if not self._is_up or len(self._queue) >= self._broker.max_queued:
            self._drop(1, "Redis is unreachable" if not self._is_up else "too many broadcasts are queued")
            return
        self._queue.append((topic, payload))
        self._wakeup.set()

    def _drop(self, count: int, why: str) -> None:
        self._metrics.broker_dropped += count
        if not self._dropping_logged:
            self._dropping_logged = True
            logger.warning(
                "%r: broadcasts reach this process only (%s); counting them in broker_dropped_total", self._broker, why
            )

    # -- the two connections --------------------------------------------------------------

    async def flushed(self) -> None:
        """Return once nothing queued is waiting to be sent (or Redis is unreachable)."""
        while (self._queue or self._sending) and self._is_up:
            self._batch_done = anyio.Event()
            await self._batch_done.wait()

    async def publish_forever(self) -> None:
        """Send what is queued, in order, in one pipeline per batch."""
        from redis.exceptions import RedisError

        while True:
            self._sending = False
            self._batch_done.set()
            if not self._queue:
                self._wakeup = anyio.Event()
                await self._wakeup.wait()
                continue
            batch = list(self._queue)
            self._queue.clear()
            self._sending = True
            try:
                pipe = self._client.pipeline(transaction=False)
                for topic, payload in batch:
                    pipe.publish(self._broker.channel_of(topic), payload)  # any topic, subscribed or not
                await pipe.execute()
            except (RedisError, OSError) as exc:
                self._drop(len(batch), f"publishing failed: {exc}")
            else:
                self._metrics.broker_published += len(batch)

    async def subscribe_forever(self) -> None:
        """Stay subscribed: reconnect with backoff whenever the connection is lost."""
        from redis.exceptions import RedisError

        broker = self._broker
        delay = broker.reconnect_delay
        while True:
            pubsub = self._client.pubsub()
            try:
                await self._listen(pubsub)
            except (RedisError, OSError) as exc:
                if self._is_up:  # it was working: try again soon
                    delay = broker.reconnect_delay
                self._went_down(exc)
            finally:
                with anyio.CancelScope(shield=True), suppress(Exception):
                    # Untyped before redis-py 8.2, typed since: either way mypy passes.
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
                    # Publishing connections made before the outage are stale: drop them now,
                    # so that the first publish after it opens a fresh one.
                    await self._client.connection_pool.disconnect()
            self.first_attempt.set()
            await anyio.sleep(delay * random.uniform(0.5, 1.0))  # jitter: processes do not retry in step
            delay = min(delay * 2, broker.max_reconnect_delay)

    async def _listen(self, pubsub: Any) -> None:
        broker = self._broker
        await pubsub.subscribe(*self._topics)
        pending = set(self._topics)
        with anyio.fail_after(broker.connect_timeout):
            while pending:
                message = await pubsub.get_message(timeout=broker.connect_timeout)
                if message is not None and message["type"] == "subscribe":
                    pending.discard(message["channel"].decode())
        self._came_up()
        interval = broker.health_check_interval
        last_seen = anyio.current_time()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=interval)
            now = anyio.current_time()
            if message is None:
                if now - last_seen >= 2 * interval:
                    raise ConnectionError(f"Redis did not answer a PING within {interval} s")
                if not pinged and now - last_seen >= interval:
                    await pubsub.ping()
                    pinged = True
                continue
            last_seen, pinged = now, False
            if message["type"] == "message":
                self._metrics.broker_received += 1
                topic = self._topics.get(message["channel"].decode())
                if topic is not None:
                    try:
                        self._deliver(topic, message["data"])
                    except Exception:
                        logger.exception("%r: delivering a publication failed", broker)

    def _came_up(self) -> None:
        self._is_up = True
        self._metrics.broker_connected = 1
        self.first_attempt.set()
        if self._down_since is not None:
            lost = self._metrics.broker_dropped - self._dropped_at_down
            logger.warning(
                "%r: connected again after %.1f s; %d broadcasts did not reach the other processes meanwhile",
                self._broker,
                anyio.current_time() - self._down_since,
                lost,
            )
        self._down_since = None
        self._dropping_logged = False

    def _went_down(self, exc: BaseException) -> None:
        if self._is_up or self._down_since is None:
            if self._is_up:
                self._metrics.broker_reconnects += 1
            logger.warning("%r: no connection to Redis (%s); reconnecting with backoff", self._broker, exc)
            self._down_since = anyio.current_time()
            self._dropped_at_down = self._metrics.broker_dropped
        else:
            logger.debug("%r: still no connection to Redis (%s)", self._broker, exc)
        self._is_up = False
        self._metrics.broker_connected = 0
