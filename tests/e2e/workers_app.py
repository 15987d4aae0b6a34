"""The browser tests' site for ``uvicorn tests.e2e.workers_app:app --workers 3``: the same
services, each with a RedisBroker at ``REDIS_URL``, so that any worker serves any request;
the sockjs-client script comes from ``E2E_CLIENT_JS``."""

from __future__ import annotations

import os
from pathlib import Path

from sockjs_asgi import RedisBroker

from .services import build_app

app, _services = build_app(
    Path(os.environ["E2E_CLIENT_JS"]),
    broker=lambda name: RedisBroker(os.environ["REDIS_URL"], channel=f"e2e-{name}"),
)
