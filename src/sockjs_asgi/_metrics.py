"""Counters of one SockJS service, as a mapping and in the Prometheus text format, and an
ASGI endpoint that serves them."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

from ._http import respond
from ._types import Receive, Scope, Send
from .protocol.escaping import utf8_length

__all__ = ["PROMETHEUS_CONTENT_TYPE", "Metrics", "MetricsEndpoint"]

#: The Content-Type of the Prometheus text exposition format that :meth:`Metrics.prometheus`
#: renders (version 0.0.4).
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


_HELP = {
    "sessions_open": ("gauge", "Sessions open now."),
    "sessions_total": ("counter", "Sessions opened since start."),
    "messages_in_total": ("counter", "Messages received from clients."),
    "messages_out_total": ("counter", "Messages queued for clients."),
    "bytes_in_total": ("counter", "UTF-8 bytes of messages received from clients."),
    "bytes_out_total": ("counter", "UTF-8 bytes of messages queued for clients."),
    "broker_connected": ("gauge", "1 while the broker reaches the other processes, else 0."),
    "broker_published_total": ("counter", "Broadcasts handed to the broker for the other processes."),
    "broker_dropped_total": ("counter", "Broadcasts the broker could not send to the other processes."),
    "broker_received_total": ("counter", "Publications received from the broker."),
    "broker_reconnects_total": ("counter", "Times the broker connection was lost."),
}

# The exposition format's grammar for metric and label names; names starting with "__" are
# reserved for Prometheus itself.
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _label_value(value: str) -> str:
    """A label value as the exposition format quotes it: backslash, double quote and line feed
    are the characters it escapes."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Mapping[str, str] | None) -> list[str]:
    """Checked ``name="value"`` pairs, sorted by name."""
    pairs = []
    for name, value in sorted((labels or {}).items()):
        if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise ValueError(f"labels: {name!r} is not a Prometheus label name")
        if name == "transport":
            raise ValueError("labels: 'transport' is the metrics' own label")
        if not isinstance(value, str):
            raise TypeError(f"labels: the value of {name!r} must be a str, got {value!r}")
        pairs.append(f'{name}="{_label_value(value)}"')
    return pairs


def render(sources: Iterable[tuple[Metrics, Mapping[str, str] | None]], prefix: str = "sockjs") -> str:
    """Several services' counters as one exposition, each family once, told apart by labels."""
    if not isinstance(prefix, str) or not _METRIC_NAME.fullmatch(prefix):
        raise ValueError(f"prefix: {prefix!r} is not a Prometheus metric name")
    checked = [(metrics, _labels(labels)) for metrics, labels in sources]
    lines: list[str] = []
    for name, (kind, help_text) in _HELP.items():
        lines += [f"# HELP {prefix}_{name} {help_text}", f"# TYPE {prefix}_{name} {kind}"]
        for metrics, base in checked:
            for family, transport, value in metrics._samples():
                if family != name:
                    continue
                pairs = [*base, *([f'transport="{_label_value(transport)}"'] if transport else [])]
                label_text = "{" + ",".join(pairs) + "}" if pairs else ""
                lines.append(f"{prefix}_{name}{label_text} {value}")
    return "\n".join(lines) + "\n"


class Metrics:
    """Counters, updated by the service as it runs.

    :meth:`snapshot` gives them as a flat mapping; per-transport session counts appear as
    ``sessions_total{transport="xhr"}`` style keys.  :meth:`prometheus` renders the same numbers
    for a ``/metrics`` endpoint.
    """

    def __init__(self) -> None:
        self.sessions_open = 0
        self.sessions_total = 0
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        #: Set by the broker (see ``sockjs_asgi.Broker``): whether other processes are reached.
        self.broker_connected = 0
        self.broker_published = 0
        self.broker_dropped = 0
        self.broker_received = 0
        self.broker_reconnects = 0
        self.sessions_by_transport: Counter[str] = Counter()
        self.open_by_transport: Counter[str] = Counter()

    def opened(self, transport: str) -> None:
        self.sessions_open += 1
        self.sessions_total += 1
        self.sessions_by_transport[transport] += 1
        self.open_by_transport[transport] += 1

    def closed(self, transport: str) -> None:
        self.sessions_open -= 1
        self.open_by_transport[transport] -= 1

    def count_in(self, message: str) -> None:
        """A message the handler received."""
        self.messages_in += 1
        # utf8_length's ASCII shortcut, inline: this is every message's path.
        self.bytes_in += len(message) if message.isascii() else utf8_length(message)

    def count_out(self, message: str) -> None:
        """A message the handler sent."""
        self.messages_out += 1
        self.bytes_out += len(message) if message.isascii() else utf8_length(message)

    def snapshot(self) -> dict[str, int]:
        """Every counter by name."""
        values = {
            "sessions_open": self.sessions_open,
            "sessions_total": self.sessions_total,
            "messages_in_total": self.messages_in,
            "messages_out_total": self.messages_out,
            "bytes_in_total": self.bytes_in,
            "bytes_out_total": self.bytes_out,
            "broker_connected": self.broker_connected,
            "broker_published_total": self.broker_published,
            "broker_dropped_total": self.broker_dropped,
            "broker_received_total": self.broker_received,
            "broker_reconnects_total": self.broker_reconnects,
        }
        for transport, count in sorted(self.sessions_by_transport.items()):
            values[f'sessions_total{{transport="{transport}"}}'] = count
        for transport, count in sorted(self.open_by_transport.items()):
            values[f'sessions_open{{transport="{transport}"}}'] = count
        return values

    def _samples(self) -> list[tuple[str, str, int]]:
        """``(family, transport or "", value)``: sessions per transport once there are any
        (their sum is the total), every other counter once."""
        samples: list[tuple[str, str, int]] = []
        if self.sessions_total:
            samples += [("sessions_open", t, n) for t, n in sorted(self.open_by_transport.items())]
            samples += [("sessions_total", t, n) for t, n in sorted(self.sessions_by_transport.items())]
        else:
            samples += [("sessions_open", "", self.sessions_open), ("sessions_total", "", 0)]
        samples += [
            ("messages_in_total", "", self.messages_in),
            ("messages_out_total", "", self.messages_out),
            ("bytes_in_total", "", self.bytes_in),
            ("bytes_out_total", "", self.bytes_out),
        ]
        return samples

    def prometheus(self, prefix: str = "sockjs", labels: Mapping[str, str] | None = None) -> str:
        """The counters in the Prometheus text exposition format (serve it with the Content-Type
        ``text/plain; version=0.0.4; charset=utf-8``, or route to a :class:`MetricsEndpoint`).

        ``labels`` are added to every sample; their values may hold any text.
        """
        return render([(self, labels)], prefix)


class MetricsEndpoint:
    """An ASGI application that serves metrics to Prometheus: ``GET`` answers the text
    exposition with its Content-Type, ``text/plain; version=0.0.4; charset=utf-8``.

    ``metrics`` is one service's :attr:`SockJSApp.metrics <sockjs_asgi.SockJSApp.metrics>`, or a
    mapping of names to several services' metrics, told apart by a ``service`` label::

        Route("/metrics", MetricsEndpoint({"echo": echo_service.metrics, "chat": chat_service.metrics}))

    ``labels`` are added to every sample.
    """

    #: What the endpoint answers with: the text format, version 0.0.4.
    content_type = PROMETHEUS_CONTENT_TYPE

    def __init__(
        self,
        metrics: Metrics | Mapping[str, Metrics],
        *,
        prefix: str = "sockjs",
        labels: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(metrics, Metrics):
            sources = [(metrics, dict(labels or {}))]
        else:
            if labels is not None and "service" in labels:
                raise ValueError("labels: 'service' names each service of the mapping")
            sources = [(each, {**(labels or {}), "service": name}) for name, each in metrics.items()]
        self._sources: list[tuple[Metrics, Mapping[str, str] | None]] = list(sources)
        self.prefix = prefix
        render(self._sources, prefix)  # bad labels or prefix fail here, not on the first scrape

    def __repr__(self) -> str:
        return f"<MetricsEndpoint of {len(self._sources)} service(s)>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # served as the whole application: nothing to start
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        elif scope["type"] != "http":
            await receive()
            await send({"type": "websocket.close", "code": 1000})
        elif scope["method"] != "GET":
            await respond(send, 405, [("allow", "GET")])
        else:
            body = render(self._sources, self.prefix).encode()
            await respond(send, 200, [("cache-control", "no-store")], body, content_type=PROMETHEUS_CONTENT_TYPE)
