"""Hypothesis strategies and helpers shared by the protocol tests."""

from __future__ import annotations

import itertools

from hypothesis import settings
from hypothesis import strategies as st

#: Characters at the edges of the escape ranges of PROTOCOL.md section 4, plus those the
#: transports treat specially, so that random text hits them often.
INTERESTING = (
    "\x00\x1f\x20\x7f\u00ff"
    "\u200b\u200c\u200f\u2010\u2027\u2028\u2029\u202f\u2030"
    "\u205f\u2060\u206f\u2070\uffef\ufff0\ufffe\uffff"
    "\ud7ff\ud800\udbff\udc00\udfff\ue000\U0001f600\U0010ffff"
    '"\\/<>&%\r\n\t'
)

#: Any code point at all, lone surrogates and astral characters included.
any_character = st.one_of(st.characters(exclude_categories=()), st.sampled_from(INTERESTING))
any_text = st.text(any_character)


def has_surrogate_pair(text: str) -> bool:
    """Whether ``text`` holds a high surrogate directly followed by a low one.

    Such a pair of separate code points is the same UTF-16 sequence as one astral character,
    so JSON (and JavaScript) cannot tell the two apart: decoding gives the astral character.
    """
    return any("\ud800" <= high <= "\udbff" and "\udc00" <= low <= "\udfff" for high, low in itertools.pairwise(text))


#: Text that survives a JSON round trip unchanged, code point for code point.
pairless_text = any_text.filter(lambda text: not has_surrogate_pair(text))


def utf16_units(text: str) -> bytes:
    """The UTF-16 code units of ``text``: what a JavaScript client holds."""
    return text.encode("utf-16-le", "surrogatepass")


#: Hypothesis' per-example deadline is a wall-clock assertion; these tests make none.
no_deadline = settings(deadline=None)
