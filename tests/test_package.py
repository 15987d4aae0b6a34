"""The package as a whole: its public names, and no asyncio on the I/O side."""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path

import sockjs_asgi

SOURCE = Path(sockjs_asgi.__file__).parent


def test_public_names_are_exported_and_sorted() -> None:
    public = {name for name in vars(sockjs_asgi) if not name.startswith("_")} - {"annotations", "protocol", "testing"}
    public -= {name for name in public if type(getattr(sockjs_asgi, name)).__name__ == "module"}
    assert sorted(sockjs_asgi.__all__) == sockjs_asgi.__all__
    assert set(sockjs_asgi.__all__) == public | {"__version__"}


def test_public_classes_and_functions_are_ours_and_documented() -> None:
    for name in sockjs_asgi.__all__:
        value = getattr(sockjs_asgi, name)
        if typing.get_origin(value) is not None:
            continue  # a type alias such as Handler (which Python 3.10's inspect.isclass accepts)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("sockjs_asgi."), name
            assert inspect.getdoc(value), name


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


def test_nothing_imports_asyncio_or_trio() -> None:
    """All concurrency goes through anyio, so that the library runs on both backends.

    The one exception is ``_loop``: on hot paths it uses asyncio's clock and futures directly
    when an asyncio task is running, and anyio's otherwise (see its tests).
    """
    offenders = {
        str(path.relative_to(SOURCE)): sorted(imported_modules(path) & {"asyncio", "trio"})
        for path in SOURCE.rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {"_loop.py": ["asyncio"]}


def test_every_option_is_documented_once_in_the_docstring_and_the_readme_table() -> None:
    """SockJSApp's keyword-only parameters are the options: its docstring describes each, and
    the README's options table has one row for each, in any order."""
    parameters = inspect.signature(sockjs_asgi.SockJSApp).parameters.values()
    options = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert "heartbeat_delay" in options
    doc = inspect.getdoc(sockjs_asgi.SockJSApp) or ""
    assert {name for name in options if f"``{name}``" not in doc} == set()
    readme = (SOURCE.parents[1] / "README.md").read_text()
    table = readme.split("## Options", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1].strip().strip("`") for line in table.splitlines() if line.startswith("| `")]
    assert sorted(rows) == sorted(options)
