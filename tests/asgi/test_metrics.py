"""Metrics in the Prometheus text format, checked with prometheus_client's own parser, and the
ASGI endpoint that serves them."""

from __future__ import annotations

import json

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from sockjs_asgi import Connection, Metrics, MetricsEndpoint, SockJSApp
from sockjs_asgi.protocol import frames
from sockjs_asgi.protocol.escaping import encode_string
from sockjs_asgi.testing import TestClient, WebSocketDenied

from .support import TIMEOUT, Recorder, session_url

pytestmark = pytest.mark.anyio

AWKWARD = ['a"b', "back\\slash", "line\nfeed", '\\"\n\\n', 'é ünïcode {x="y"}', "", "trailing\\"]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, parsed by prometheus_client: (name, labels) to value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def busy_metrics() -> Metrics:
    metrics = Metrics()
    metrics.opened("websocket")
    metrics.opened("xhr")
    metrics.closed("xhr")
    metrics.messages_in, metrics.bytes_in = 3, 12
    return metrics


@pytest.mark.parametrize("value", AWKWARD)
async def test_label_values_are_escaped_for_the_exposition_format(value: str) -> None:
    text = busy_metrics().prometheus(labels={"service": value, "zone": "a"})
    parsed = samples(text)
    labels = (("service", value), ("transport", "websocket"), ("zone", "a"))
    assert parsed[("sockjs_sessions_open", labels)] == 1
    assert parsed[("sockjs_messages_in_total", (("service", value), ("zone", "a")))] == 3


async def test_the_exposition_parses_without_labels_and_before_any_session() -> None:
    parsed = samples(Metrics().prometheus(prefix="chat"))
    assert parsed[("chat_sessions_open", ())] == 0
    assert parsed[("chat_bytes_out_total", ())] == 0


@pytest.mark.parametrize("name", ["1a", "a-b", "", "__reserved", "a b", "transport"])
async def test_bad_label_names_are_refused_naming_the_option(name: str) -> None:
    with pytest.raises(ValueError, match="labels"):
        Metrics().prometheus(labels={name: "x"})
    with pytest.raises(ValueError, match="labels"):
        MetricsEndpoint(Metrics(), labels={name: "x"})


@pytest.mark.parametrize("prefix", ["", "a-b", "9x", "a b"])
async def test_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Metrics().prometheus(prefix=prefix)
    with pytest.raises(ValueError, match="prefix"):
        MetricsEndpoint(Metrics(), prefix=prefix)


async def test_label_value_must_be_text() -> None:
    with pytest.raises(TypeError, match="service"):
        Metrics().prometheus(labels={"service": 3})  # type: ignore[dict-item]


async def test_endpoint_serves_a_live_service_with_the_prometheus_content_type() -> None:
    recorder = Recorder(echo=True)
    service = SockJSApp(recorder)
    app = Starlette(routes=[Mount("/echo", service), Route("/metrics", MetricsEndpoint(service.metrics))])
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app, lifespan=False) as client:
            url = "/echo" + session_url()
            assert (await client.request("POST", url + "/xhr")).body == b"o\n"
            assert (await client.request("POST", url + "/xhr_send", body=b'["hi"]')).status == 204
            await recorder.wait_for(1)
            response = await client.request("GET", "/metrics")
    assert response.status == 200
    assert response.header("content-type") == MetricsEndpoint.content_type == "text/plain; version=0.0.4; charset=utf-8"
    parsed = samples(response.text)
    assert parsed[("sockjs_sessions_total", (("transport", "xhr"),))] == 1
    assert parsed[("sockjs_messages_in_total", ())] == 1
    assert parsed[("sockjs_messages_out_total", ())] == 1


async def test_endpoint_tells_several_services_apart() -> None:
    endpoint = MetricsEndpoint({"echo": busy_metrics(), 'odd"name': Metrics()}, prefix="app", labels={"pod": "p1"})
    with anyio.fail_after(TIMEOUT):
        async with TestClient(endpoint) as client:
            response = await client.request("GET", "/")
            refused = await client.request("POST", "/")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert len(families) == 11  # each family once, as the format requires (6 of sessions, 5 of the broker)
    parsed = samples(response.text)
    assert parsed[("app_sessions_open", (("pod", "p1"), ("service", "echo"), ("transport", "websocket")))] == 1
    assert parsed[("app_sessions_open", (("pod", "p1"), ("service", 'odd"name')))] == 0
    assert parsed[("app_messages_in_total", (("pod", "p1"), ("service", "echo")))] == 3
    assert (refused.status, refused.header("allow")) == (405, "GET")
    with pytest.raises(ValueError, match="service"):
        MetricsEndpoint({"echo": Metrics()}, labels={"service": "x"})


async def test_endpoint_refuses_websockets() -> None:
    endpoint = MetricsEndpoint(Metrics())
    assert repr(endpoint) == "<MetricsEndpoint of 1 service(s)>"
    with anyio.fail_after(TIMEOUT):
        async with TestClient(endpoint, lifespan=False) as client:
            with pytest.raises(WebSocketDenied):
                async with client.websocket("/"):
                    pass


# Text whose UTF-8 length is not its length, text the SockJS escape set changes, and plain ASCII.
SENT = ["ascii only", "Grüße", "emoji 😀", "lone \ud800 surrogate", "\u2028", "control \x01", 'quote " and \\']


async def test_the_byte_counters_count_utf8_whatever_the_handler_sends() -> None:
    async def handler(conn: Connection) -> None:
        async for _ in conn:
            for text in SENT:
                await conn.send(text)

    service = SockJSApp(handler)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(service) as client:
            url = session_url()
            assert (await client.request("POST", url + "/xhr")).body == b"o\n"
            assert (await client.request("POST", url + "/xhr_send", body='["été"]'.encode())).status == 204
            answer = await client.request("POST", url + "/xhr")
    assert answer.body == (frames.messages(encode_string(text) for text in SENT) + "\n").encode()
    assert json.loads(answer.body[1:]) == SENT
    metrics = service.metrics
    assert (metrics.messages_in, metrics.bytes_in) == (1, len("été".encode()))
    assert metrics.messages_out == len(SENT)
    assert metrics.bytes_out == sum(len(text.encode("utf-8", "surrogatepass")) for text in SENT)
