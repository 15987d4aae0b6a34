"""The messages every transport must carry unchanged (PROTOCOL.md 4 and 11 item 13).

Each one aims at a way a transport can corrupt text: JSON and JavaScript escaping, the
characters browsers mangle, the eventsource ``decodeURI``, the htmlfile ``<script>`` block, the
jsonp form post, line-based framing, and UTF-16 edge cases, lone surrogates included.
"""

from __future__ import annotations

__all__ = ["BURST", "LARGE", "WIDE"]


def _span(first: int, last: int) -> str:
    return "".join(chr(code) for code in range(first, last + 1))


WIDE: list[str] = [
    # ASCII and the empty string
    "hello",
    "",
    " ",
    _span(0x20, 0x7E),
    # control characters, NUL among them
    _span(0x00, 0x1F) + "\x7f",
    "\x00",
    "before\x00after",
    "\x1b[31mred\x1b[0m",
    # line breaks and event-stream look-alikes
    "\r\n",
    "\n",
    "\r",
    "line1\nline2\r\nline3\rline4",
    "data: x\n\n",
    "data: x\r\n\r\n",
    "event: message\nid: 1\nretry: 1\ndata: y\n\n",
    ": comment\n",
    # markup that must not escape a <script> block or an HTML page
    "</script>",
    "<script>window.pwned = true</script>",
    "</SCRIPT><!--",
    "<!--",
    "-->",
    "<![CDATA[x]]>",
    "&amp;",
    "&lt;&gt;&quot;&#39;&#x27;",
    "<>&'\"",
    # quotes and backslashes
    '"',
    "'",
    "\\",
    '\\"',
    "\\\\",
    "\\u0000",
    "\\n",
    "\\ud800",
    # percent signs, which the eventsource client passes through decodeURI
    "%",
    "%%",
    "%22",
    "%25",
    "%0A%0D%00",
    "%E0%A4%A",
    "%u1234",
    "100% sure",
    # JSON and SockJS frame look-alikes
    '["a","b"]',
    '{"a": 1, "b": [true, null]}',
    "[]",
    "null",
    "o",
    "h",
    "a",
    "c",
    'a["x"]',
    'c[3000,"Go away!"]',
    'm"x"',
    "]);alert(1);//",
    # URL-ish text, which the jsonp sender posts as a form
    "?a=b&c=%20",
    "http://example.com/path?q=1&r=%20#frag",
    "a+b=c&d=e",
    "d=x&i=1",
    "+",
    # scripts from around the world
    "Zażółć gęślą jaźń",
    "Привет, мир",
    "日本語のテキスト",
    "한국어 텍스트",
    "ελληνικά",
    "हिन्दी",
    # right to left, and the bidi controls
    "עברית",
    "العربية",
    "\u202eRTL override\u202c",
    _span(0x202A, 0x202E),
    "\u061c\u200f",
    # zero-width and invisible characters
    _span(0x200B, 0x200F),
    "a\u200cb\u200dc",
    _span(0x2060, 0x206F),
    "\ufeff",
    # line and paragraph separators, which end a JavaScript string in old engines
    "\u2028",
    "\u2029",
    "a\u2028b\u2029c",
    # combining marks, many of which the client escapes because Chrome used to mangle them
    "e\u0301",
    _span(0x0300, 0x036F),
    "Z\u0324\u0354\u0367\u0311\u0313a\u0308\u0356\u032d\u0308\u0307l\u036e\u0312\u036b",
    _span(0x0591, 0x05AF),
    "\u0e38\u0e39\u1dc0\u1dcf\u20d0\u20d1\u302b\u302c",
    _span(0xF900, 0xF90F) + _span(0xFB1D, 0xFB2A),
    # specials and non-characters at the end of the BMP
    _span(0xFFF0, 0xFFFF),
    "\ufffd",
    "\ufffe",
    "\uffff",
    "\ufdd0\ufdef",
    # astral planes: emoji, sequences joined by ZWJ, flags, mathematical letters
    "😀",
    "👩\u200d👩\u200d👧\u200d👦",
    "🇵🇱🇯🇵",
    "\U0001d573\U0001d58a\U0001d591\U0001d591\U0001d594",  # "Hello" in Fraktur
    "\U00010000\U0001f600\U0010ffff",
    "\U0001fffe\U0010fffe",
    "".join(chr(code) for code in range(0x10000, 0x110000, 0x1001)),
    # lone and misordered surrogates: legal in a JavaScript string, not in UTF-8
    "\ud800",
    "\udfff",
    "a\ud800b",
    "\udc00\ud800",
    "\ud83d",
    "x\ude00",
    # every BMP character that is not a surrogate, in one message
    _span(0x0000, 0xD7FF) + _span(0xE000, 0xFFFF),
]

#: About 200 KB of mixed text, bigger than any response limit.
LARGE: str = ('ASCII 0123 żółć 日本語 😀 </script> <!-- %22 \u2028 \\ " \x00 \r\n data: x\n\n' * 4000)[:200_000]

#: A burst whose order must survive the client's batching and the server's queueing.
BURST: list[str] = [f"burst {index:03d} ✓" for index in range(200)]
