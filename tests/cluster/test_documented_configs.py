"""The balancer configurations that docs/deployment.md gives, checked for real: the haproxy one is
the one the cluster tests run, and the nginx one, run in front of the cluster example's backends,
keeps every request of a session on one process, passes websockets and streams."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from examples.cluster.launch import (
    ROOT,
    Cluster,
    Process,
    free_port,
    haproxy_config,
    http_ok,
    running_cluster,
    start_on_a_free_port,
    wait_ready,
)

from .client import TRANSPORTS, Session
from .crowd import Crowd, Delivery, full_round, misrouted, report

DOCS = ROOT / "docs" / "deployment.md"
MISSING = [name for name in ("redis-server", "haproxy", "nginx") if shutil.which(name) is None]

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        bool(MISSING) and os.environ.get("CI") != "true",
        reason=f"needs Debian's {' and '.join(MISSING)} (.ci/run installs them)",
    ),
]


def fenced(language: str) -> list[str]:
    """The code blocks of docs/deployment.md in ``language``."""
    return re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), re.S)


def directives(config: str) -> list[str]:
    """A haproxy configuration's lines without comments, addresses, or the check interval."""
    found = []
    for line in config.splitlines():
        line = " ".join(line.split("#", 1)[0].split())
        if not line or line.startswith(("bind ", "server ")):
            continue
        found.append(re.sub(r"inter \S+", "inter X", line))
    return found


def test_the_documented_haproxy_configuration_is_the_tested_one(tmp_path: Path) -> None:
    documented = fenced("haproxy")[0]
    assert directives(documented) == directives(haproxy_config(8000, [], check_interval="500ms"))
    local = documented.replace("bind :80", f"bind 127.0.0.1:{free_port()}")
    (tmp_path / "haproxy.cfg").write_text(local)
    checked = subprocess.run(["haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, 3, check_interval="500ms") as running:
        yield running


class Nginx(Process):
    def start(self, config: Path) -> None:
        self._spawn(["nginx", "-p", str(config.parent), "-c", str(config), "-e", str(self.log)])
        wait_ready("nginx", lambda: http_ok(self.port, "/echo/info"), self)


@pytest.fixture
def nginx(cluster: Cluster, tmp_path: Path) -> Iterator[Nginx]:
    documented = fenced("nginx")[0]
    servers = iter(f"127.0.0.1:{backend.port}" for backend in cluster.backends)
    block = re.sub(r"10\.0\.0\.\d+:8000", lambda _match: next(servers), documented)
    work = tmp_path / "nginx"
    work.mkdir()
    temp_paths = "\n".join(
        f"    {kind}_temp_path {work / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = work / "nginx.conf"
    server = Nginx("nginx", 0, work / "error.log")

    def start() -> None:
        listen = block.replace("listen 80;", f"listen 127.0.0.1:{server.port};")
        config.write_text(
            f"daemon off;\npid {work / 'nginx.pid'};\nerror_log {work / 'error.log'};\nevents {{}}\n"
            f"http {{\n    access_log off;\n{temp_paths}\n{listen}\n}}\n"
        )
        server.start(config)

    start_on_a_free_port(server, start)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # see test_haproxy_cluster's docstring
async def test_the_documented_nginx_configuration_keeps_sessions_on_their_process(
    cluster: Cluster, nginx: Nginx
) -> None:
    url = f"http://127.0.0.1:{nginx.port}"
    async with anyio.create_task_group() as task_group:
        crowd = Crowd(url, task_group)
        await crowd.open(
            [
                Session(url, transport, server_id=f"{secrets.randbelow(10):03d}")
                for transport in TRANSPORTS
                for _ in range(10)
            ]
        )
        sessions = crowd.sessions
        by_server_id: dict[str, set[str | None]] = {}
        for session in sessions:
            by_server_id.setdefault(session.server_id, set()).add(session.backend)
        assert all(len(backends) == 1 for backends in by_server_id.values()), by_server_id
        delivered = await full_round(crowd, sessions, sessions, "nginx", 2)
        assert delivered == Delivery(expected=40 * 40 * 2, delivered=40 * 40 * 2)
        assert misrouted(sessions) == []
        assert [session for session in sessions if session.ended] == []
        task_group.cancel_scope.cancel()
    report(
        "the documented nginx configuration, 40 sessions",
        sessions_per_process=dict(sorted(Counter(str(session.backend) for session in sessions).items())),
        misrouted_sessions=0,
        broadcast=delivered,
    )
