"""Development tasks: ``nox`` runs lint, the tests and a tiny benchmark run; ``nox -s demo`` starts the chat demo."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "tests", "unit", "docs", "build", "bench-smoke"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent

#: Every Python the package supports (pyproject.toml's classifiers).  `tests` runs the whole suite
#: on the interpreter running nox; `unit` runs the protocol and in-process tests on the others.
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
OTHER_PYTHONS = [version for version in PYTHONS if version != f"{sys.version_info[0]}.{sys.version_info[1]}"]
# pyenv's interpreters, found by name (python3.10, ...) without activating pyenv.  Appended, so
# that `python3` on PATH stays what it was.
os.environ["PATH"] = os.pathsep.join(
    [os.environ.get("PATH", ""), *(str(path) for path in sorted(Path.home().glob(".pyenv/versions/3.*/bin")))]
)
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


@nox.session(python=OTHER_PYTHONS)
def unit(session: nox.Session) -> None:
    """The protocol core and the in-process tests on every other supported Python."""
    install(session, "test")  # the whole group: tests/asgi drives the framework examples too
    session.run("pytest", "tests/protocol", "tests/asgi", "tests/test_package.py", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy --strict over everything."""
    install(session, "test", "lint", "bench")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "src", "tests", "examples", "benchmarks", "noxfile.py", "mkdocs_hooks.py")


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


@nox.session(name="bench-instructions")
def bench_instructions(session: nox.Session) -> None:
    """Instructions per message, receiver or round trip on the hot paths, in-process, against bare
    ASGI (needs valgrind; not in CI): what time on a shared machine cannot show."""
    install(session, "bench")
    session.run("python", "-m", "benchmarks.instructions", *session.posargs)


@nox.session
def scale(session: nox.Session) -> None:
    """50,000 idle websocket sessions on one uvicorn process, then broadcasts to all (not in CI):
    RSS per session and time until all have each message, against bare ASGI."""
    install(session, "bench")
    session.run("python", "-m", "benchmarks.scale", *session.posargs)


@nox.session(name="bench-broker")
def bench_broker(session: nox.Session) -> None:
    """Broadcast through the Redis broker on one process and on two, against the in-memory broker
    (needs Debian's redis-server)."""
    install(session, "bench")
    session.install("-e", ".[redis]")
    session.run("python", "-m", "benchmarks.broker", *session.posargs)


@nox.session(name="bench-workers")
def bench_workers(session: nox.Session) -> None:
    """xhr-polling and xhr-streaming through uvicorn --workers 3 against one process (needs
    Debian's redis-server)."""
    install(session, "bench")
    session.install("-e", ".[redis]")
    session.run("python", "-m", "benchmarks.workers", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """Churn and soak (not in the default run, not CI): 100,000 sessions opened and abandoned
    across every transport against uvicorn; fails if anything is left or RSS grew over 10%."""
    install(session, "test")
    session.run("python", "-m", "benchmarks.soak", *session.posargs)


@nox.session
def conformance(session: nox.Session) -> None:
    """The official sockjs-protocol suite, from a local Python 3 port in .cache/suite (not shipped)."""
    runner = ROOT / ".cache" / "suite" / "run.sh"
    if not runner.exists():
        session.error(
            f"{runner} not found: port sockjs/sockjs-protocol to Python 3 there first (see docs/conformance.md)"
        )
    install(session, "test")
    session.install("websocket-client", "ws4py")  # the suite's own websocket clients
    bin_dir = Path(session.bin)
    env = {"UVICORN": str(bin_dir / "uvicorn"), "SUITE_PYTHON": str(bin_dir / "python")}
    session.run("bash", str(runner), *session.posargs, external=True, env=env)


@nox.session
def demo(session: nox.Session) -> None:
    """The chat demo on http://127.0.0.1:8000/."""
    install(session)
    session.install("uvicorn[standard]")
    install_sockjs_client(session)
    port = os.environ.get("PORT", "8000")
    session.run("uvicorn", "examples.chat.app:app", "--host", "127.0.0.1", "--port", port)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs.yml), with every warning an error, into site/."""
    install(session, "docs")
    session.run("mkdocs", "build", "--strict", *session.posargs, env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def build(session: nox.Session) -> None:
    """sdist and wheel into dist/, checked by twine; then the wheel, installed alone, serves a request."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "build"))
    shutil.rmtree(ROOT / "dist", ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(ROOT / "dist"))
    session.run("twine", "check", "--strict", *(str(path) for path in sorted((ROOT / "dist").iterdir())))
    (wheel,) = (ROOT / "dist").glob("*.whl")
    session.install(f"{wheel}[server]")
    session.install("--force-reinstall", "--no-deps", str(wheel))  # this build, whatever was there
    # -I: neither the checkout nor the current directory is importable, only the installed copy.
    session.run("python", "-I", str(ROOT / "tests" / "installed" / "check_wheel.py"))


@nox.session
def cluster(session: nox.Session) -> None:
    """The cluster example: Redis, 3 uvicorn processes and haproxy on loopback ports, until Ctrl-C
    (needs Debian's redis-server and haproxy)."""
    install(session)
    session.install("-e", ".[redis,server]")
    size = session.posargs[0] if session.posargs else "3"
    # Ctrl-C reaches the launcher too; give it time to stop the backends, haproxy and Redis.
    session.run("python", "-m", "examples.cluster", size, interrupt_timeout=30.0)
