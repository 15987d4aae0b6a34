"""The protocol core imports nothing but the standard library and itself (STYLE.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import sockjs_asgi.protocol

PACKAGE = "sockjs_asgi.protocol"
PACKAGE_DIR = Path(sockjs_asgi.protocol.__file__).parent
MODULES = sorted(PACKAGE_DIR.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_allowed(name: str) -> bool:
    """Whether importing the absolute module ``name`` keeps the core free of I/O code."""
    return name.split(".")[0] in sys.stdlib_module_names or name == PACKAGE or name.startswith(PACKAGE + ".")


def foreign_imports(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """The modules imported by ``source`` (the text of ``module``) that are not allowed.

    Relative imports are resolved against ``module``; ``from X import y`` is checked as
    ``X.y`` when ``X`` itself is an ancestor of the protocol package, since ``y`` may then be
    a module outside it.  Calls to ``__import__`` and ``importlib.import_module`` are reported
    too: the check cannot see what they load.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names if not is_allowed(alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    found.append("." * node.level + (node.module or ""))
                    continue
                base = ".".join([*parts[: len(parts) - (node.level - 1)], *filter(None, [node.module])])
            else:
                base = node.module or ""
            if PACKAGE.startswith(base + "."):
                found.extend(f"{base}.{alias.name}" for alias in node.names if not is_allowed(f"{base}.{alias.name}"))
            elif not is_allowed(base):
                found.append(base)
        elif isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Name) and function.id == "__import__":
                found.append("__import__(...)")
            elif isinstance(function, ast.Attribute) and function.attr == "import_module":
                found.append("import_module(...)")
    return found


def test_the_core_modules_are_found() -> None:
    # Guards against a wrong path turning the next test into a no-op.
    assert {path.name for path in MODULES} >= {
        "__init__.py",
        "errors.py",
        "escaping.py",
        "frames.py",
        "http.py",
        "session.py",
        "transports.py",
    }


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_core_imports_only_the_standard_library_and_itself(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert foreign_imports(source, module_name(path), is_package=path.name == "__init__.py") == []


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import anyio", ["anyio"]),
        ("import anyio.abc, json", ["anyio.abc"]),
        ("import starlette.requests as r", ["starlette.requests"]),
        ("from anyio import Event", ["anyio"]),
        ("from starlette.responses import Response", ["starlette.responses"]),
        ("import sockjs_asgi", ["sockjs_asgi"]),
        ("import sockjs_asgi._app", ["sockjs_asgi._app"]),
        ("from sockjs_asgi import _session, protocol", ["sockjs_asgi._session"]),
        ("from sockjs_asgi._types import Scope", ["sockjs_asgi._types"]),
        ("from .. import _app", ["sockjs_asgi._app"]),
        ("from .._connection import Connection", ["sockjs_asgi._connection"]),
        ("from .. import x as y", ["sockjs_asgi.x"]),
        ("from ... import x", ["..."]),  # beyond the top-level package
        ("from ...other import x", ["...other"]),
        ("def f():\n    import trio", ["trio"]),
        ("if TYPE_CHECKING:\n    from anyio import abc", ["anyio"]),
        ("import importlib\nimportlib.import_module('anyio')", ["import_module(...)"]),
        ("__import__('anyio')", ["__import__(...)"]),
    ],
)
def test_checker_reports_foreign_imports(source: str, found: list[str]) -> None:
    assert foreign_imports(source, "sockjs_asgi.protocol.session") == found


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations",
        "import json, re, enum",
        "from collections.abc import Iterable",
        "from email.utils import formatdate",
        "from . import frames",
        "from .errors import LocalProtocolError",
        "import sockjs_asgi.protocol.frames",
        "from sockjs_asgi.protocol import frames",
        "from sockjs_asgi.protocol.errors import SockJSError",
        "from sockjs_asgi import protocol",
    ],
)
def test_checker_accepts_standard_library_and_core_imports(source: str) -> None:
    assert foreign_imports(source, "sockjs_asgi.protocol.session") == []


def test_checker_resolves_relative_imports_of_the_package_itself() -> None:
    # In protocol/__init__.py "." is the protocol package, ".." is sockjs_asgi.
    assert foreign_imports("from . import frames", PACKAGE, is_package=True) == []
    assert foreign_imports("from .. import _app", PACKAGE, is_package=True) == ["sockjs_asgi._app"]
