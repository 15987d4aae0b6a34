"""Counters of one SockJS service, as a mapping and in the Prometheus text format."""

from __future__ import annotations

from collections import Counter

__all__ = ["Metrics"]

_HELP = {
    "sessions_open": ("gauge", "Sessions open now."),
    "sessions_total": ("counter", "Sessions opened since start."),
    "messages_in_total": ("counter", "Messages received from clients."),
    "messages_out_total": ("counter", "Messages queued for clients."),
    "bytes_in_total": ("counter", "UTF-8 bytes of messages received from clients."),
    "bytes_out_total": ("counter", "UTF-8 bytes of messages queued for clients."),
}


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

    def snapshot(self) -> dict[str, int]:
        """Every counter by name."""
        values = {
            "sessions_open": self.sessions_open,
            "sessions_total": self.sessions_total,
            "messages_in_total": self.messages_in,
            "messages_out_total": self.messages_out,
            "bytes_in_total": self.bytes_in,
            "bytes_out_total": self.bytes_out,
        }
        for transport, count in sorted(self.sessions_by_transport.items()):
            values[f'sessions_total{{transport="{transport}"}}'] = count
        for transport, count in sorted(self.open_by_transport.items()):
            values[f'sessions_open{{transport="{transport}"}}'] = count
        return values

    def prometheus(self, prefix: str = "sockjs", labels: dict[str, str] | None = None) -> str:
        """The counters in the Prometheus text exposition format, one group per metric."""
        base = [f'{key}="{value}"' for key, value in sorted((labels or {}).items())]
        samples = self.snapshot()
        lines: list[str] = []
        for name, (kind, help_text) in _HELP.items():
            lines += [f"# HELP {prefix}_{name} {help_text}", f"# TYPE {prefix}_{name} {kind}"]
            for key, value in samples.items():
                family, _, extra = key.partition("{")
                if family != name or (not extra and name.startswith("sessions_") and self.sessions_total):
                    continue  # sessions are given per transport; their sum is the total
                label_text = ",".join([*base, *([extra.rstrip("}")] if extra else [])])
                lines.append(f"{prefix}_{name}{{{label_text}}} {value}" if label_text else f"{prefix}_{name} {value}")
        return "\n".join(lines) + "\n"
