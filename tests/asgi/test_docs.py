"""Every ```python block of README.md and docs/ runs, in order, one namespace per file.

A file reads as a tutorial: later blocks use what earlier ones defined.  Top-level ``await`` is
allowed (the block then runs in the event loop).  Each ``async def test_...`` a block defines
runs right after that block, once per ``pytest.mark.parametrize`` value if it has one, so the
tests the documentation shows are real tests.  A block preceded by the line
``<!-- test: compile-only -->`` is only compiled: keep that for fragments that cannot run (code
of another library, say).

It lives with the in-process tests, which run on every supported Python, and before the browser
tests, whose session-wide Playwright driver keeps an event loop running in the main thread.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
COMPILE_ONLY = "<!-- test: compile-only -->"
TIMEOUT = 10.0

_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    source: str
    is_compile_only: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip().rpartition("\n")[2].strip()
        line = text.count("\n", 0, match.start()) + 2  # the block's first line of code
        found.append(Block(path, line, match.group(1), before == COMPILE_ONLY))
    return found


def test_the_documents_have_python_blocks() -> None:
    """The extraction works: a change of fence style would otherwise test nothing."""
    counts = {path.relative_to(ROOT).as_posix(): len(blocks(path)) for path in DOCUMENTS}
    assert counts["README.md"] >= 4
    assert counts["docs/quickstart.md"] >= 3
    assert sum(counts.values()) >= 25
    compile_only = sum(block.is_compile_only for path in DOCUMENTS for block in blocks(path))
    assert compile_only <= 2, "compile-only blocks are for rare fragments"


def _calls(function: Callable[..., Any]) -> list[dict[str, Any]]:
    """The keyword arguments to call a documented test with: one call, or one per parameter."""
    calls: list[dict[str, Any]] = [{}]
    for mark in getattr(function, "pytestmark", []):
        if mark.name == "parametrize":
            names = [name.strip() for name in mark.args[0].split(",")] if isinstance(mark.args[0], str) else []
            values = [value if len(names) > 1 else (value,) for value in mark.args[1]]
            calls = [{**call, **dict(zip(names, value, strict=True))} for call in calls for value in values]
    return calls


async def _run(block: Block, namespace: dict[str, Any]) -> None:
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    code = compile(block.source, block.where, "exec", flags=flags, dont_inherit=True)
    if block.is_compile_only:
        return
    before = {name: value for name, value in namespace.items() if name.startswith("test_")}
    with anyio.fail_after(TIMEOUT):
        if code.co_flags & inspect.CO_COROUTINE:
            await eval(code, namespace)
        else:
            exec(code, namespace)
        for name, value in list(namespace.items()):
            if name.startswith("test_") and before.get(name) is not value and inspect.iscoroutinefunction(value):
                for arguments in _calls(value):
                    await value(**arguments)


@pytest.mark.anyio
@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.relative_to(ROOT).as_posix())
async def test_code_blocks_run(path: Path) -> None:
    namespace: dict[str, Any] = {"__name__": f"docs_{path.stem.replace('-', '_')}"}
    for block in blocks(path):
        try:
            await _run(block, namespace)
        except Exception as exc:
            raise AssertionError(f"the block at {block.where} failed: {exc!r}") from exc


def test_readme_links_are_absolute() -> None:
    """PyPI shows the README without the repository around it: relative links would break."""
    links = re.findall(r"\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert links
    assert [link for link in links if not link.startswith(("https://", "http://", "#"))] == []
