"""MkDocs hooks: render the reStructuredText habits of the docstrings as Markdown would.

The docstrings use Sphinx roles (``:class:`Connection```) and ``::`` before literal blocks;
mkdocstrings renders them as Markdown, where both would show up as typed.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|meth|func|attr|exc|mod|data):(<code>)~?")
_LITERAL_MARKER = re.compile(r"<p>::</p>\s*")
_TRAILING_MARKER = re.compile(r"::</p>")


def on_page_content(html: str, **kwargs: Any) -> str:
    """Drop role prefixes and turn ``text::`` into ``text:``, as Sphinx renders them."""
    html = _ROLE.sub(r"\1", html)
    html = _LITERAL_MARKER.sub("", html)
    return _TRAILING_MARKER.sub(":</p>", html)
