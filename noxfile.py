"""Development tasks: ``nox`` runs lint, the tests and a tiny benchmark run; ``nox -s demo`` starts the chat demo."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "tests", "bench-smoke"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
NPM_PREFIX = ROOT / ".cache" / "npm"
SOCKJS_CLIENT = "sockjs-client@1.6.1"


def install(session: nox.Session, *groups: str) -> None:
    session.install("-e", ".", *(dep for group in groups for dep in nox.project.dependency_groups(PYPROJECT, group)))


def install_sockjs_client(session: nox.Session) -> None:
    """The real browser client, from npm, into a git-ignored folder."""
    if (NPM_PREFIX / "node_modules" / "sockjs-client" / "dist" / "sockjs.min.js").exists():
        return
    if shutil.which("npm") is None:
        session.warn("npm not found: the demo page will load sockjs-client from a CDN")
        return
    session.run("npm", "install", "--no-audit", "--no-fund", "--prefix", str(NPM_PREFIX), SOCKJS_CLIENT, external=True)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite with branch coverage; the protocol core must stay at 100%."""
    install(session, "test")
    install_sockjs_client(session)
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "report", "--include=src/sockjs_asgi/protocol/*", "--fail-under=100")
    session.run("coverage", "report", "--fail-under=85")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy --strict over everything."""
    install(session, "test", "lint", "bench")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "src", "tests", "examples", "benchmarks", "noxfile.py")


@nox.session
def e2e(session: nox.Session) -> None:
    """Only the browser tests (needs Debian's chromium)."""
    install(session, "test")
    install_sockjs_client(session)
    session.run("pytest", "tests/e2e", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Real servers over real sockets, as ratios to bare ASGI (``-- --smoke``: tiny, to check the harness)."""
    install(session, "bench")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(name="bench-smoke")
def bench_smoke(session: nox.Session) -> None:
    """The benchmark harness once at a tiny size (figures mean nothing): fails unless every figure is produced."""
    install(session, "bench")
    session.run("python", "-m", "benchmarks", "--smoke", *session.posargs)


@nox.session
def conformance(session: nox.Session) -> None:
    """The official sockjs-protocol suite, from a local Python 3 port in .cache/suite (not shipped)."""
    runner = ROOT / ".cache" / "suite" / "run.sh"
    if not runner.exists():
        session.error(
            f"{runner} not found: port sockjs/sockjs-protocol to Python 3 there first (see docs/conformance.md)"
        )
    install(session, "test")
    session.run(
        "bash", str(runner), *session.posargs, external=True, env={"UVICORN": str(Path(session.bin) / "uvicorn")}
    )


@nox.session
def demo(session: nox.Session) -> None:
    """The chat demo on http://127.0.0.1:8000/."""
    install(session)
    session.install("uvicorn[standard]")
    install_sockjs_client(session)
    port = os.environ.get("PORT", "8000")
    session.run("uvicorn", "examples.chat.app:app", "--host", "127.0.0.1", "--port", port)
