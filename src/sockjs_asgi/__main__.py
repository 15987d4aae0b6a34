"""``python -m sockjs_asgi module:handler``: serve a handler on uvicorn, for trying things out.

::

    python -m sockjs_asgi examples.echo:echo --port 8000 --heartbeat-delay 5
    python -m sockjs_asgi myapp:handler --prefix /echo --disabled-transports websocket,jsonp

Every option of ``SockJSApp`` is a flag (``heartbeat_delay`` is ``--heartbeat-delay``; a
callable such as ``authorize`` is given as ``module:function``; a collection as a
comma-separated list).  Options left out keep ``SockJSApp``'s defaults.  ``--prefix`` mounts
the service below a path, as the sockjs-protocol suite expects (``/echo``).  The handler may
also be a ``Multiplexer``.  uvicorn comes with the ``server`` extra:
``pip install 'sockjs-asgi[server]'``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from ._app import SockJSApp
from ._router import SockJSRouter

__all__ = ["build_app", "main", "parse_args"]


def load(target: str) -> Any:
    """The object named by ``"package.module:attribute"``."""
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(f"expected module:attribute, got {target!r}")
    value: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


def _option_help() -> dict[str, str]:
    """Each option's sentence from ``SockJSApp``'s docstring: one place documents them."""
    found: dict[str, str] = {}
    doc = inspect.getdoc(SockJSApp) or ""
    for match in re.finditer(r"^\* ``(\w+)``(.*?)(?=^\* |^\S|\Z)", doc, re.MULTILINE | re.DOTALL):
        text = re.sub(r"^(\([^)]*\))?\s*:\s*", "", " ".join(match.group(2).split()))
        found[match.group(1)] = text.replace("``", "").replace("%", "%%")
    return found


def _unwrap_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint


def _converter(hint: Any) -> Callable[[str], Any] | None:
    """How to read a flag's value for an option of type ``hint``; None for a bool switch."""
    hint = _unwrap_optional(hint)
    origin = typing.get_origin(hint) or hint
    if hint is bool:
        return None
    if hint in (int, float, str):
        return typing.cast("Callable[[str], Any]", hint)
    if origin in (frozenset, set, tuple, list, Sequence, AbstractSet, Iterable):
        return lambda text: [item.strip() for item in text.split(",") if item.strip()]
    if origin is Callable:
        return load
    return str


def _options() -> list[inspect.Parameter]:
    """SockJSApp's options: the keyword-only parameters of its constructor."""
    parameters = inspect.signature(SockJSApp.__init__).parameters.values()
    return [parameter for parameter in parameters if parameter.kind is inspect.Parameter.KEYWORD_ONLY]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: the handler, the server's flags and the service's options."""
    parser = argparse.ArgumentParser(
        prog="python -m sockjs_asgi",
        description="Serve a SockJS handler (async def handler(conn)) on uvicorn.",
    )
    parser.add_argument("handler", help="the handler, as module:function (a Multiplexer works too)")
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    server.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    server.add_argument("--prefix", default="", help="serve the service below this path, e.g. /echo")
    server.add_argument("--log-level", default="info", help="uvicorn's log level (default: %(default)s)")
    service = parser.add_argument_group("SockJSApp options (defaults: SockJSApp's)")
    helps = _option_help()
    hints = typing.get_type_hints(SockJSApp.__init__)
    for option in _options():
        flag = "--" + option.name.replace("_", "-")
        help_text = helps.get(option.name, "see SockJSApp")
        if option.default not in (None, ()):
            help_text += f" (default: {option.default!r})".replace("%", "%%")
        converter = _converter(hints[option.name])
        if converter is None:
            service.add_argument(
                flag, dest=option.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
            )
        else:
            service.add_argument(flag, dest=option.name, type=converter, default=argparse.SUPPRESS, help=help_text)
    return parser.parse_args(argv)


def build_app(arguments: argparse.Namespace) -> Any:
    """The ASGI application the command line describes."""
    option_names = {option.name for option in _options()}
    options = {name: value for name, value in vars(arguments).items() if name in option_names}
    handler = load(arguments.handler)
    if isinstance(handler, SockJSApp):
        if options:
            raise ValueError(f"{arguments.handler} is a SockJSApp already: give its handler to set options")
        service = handler
    else:
        service = SockJSApp(handler, **options)
    prefix = arguments.prefix.rstrip("/")
    if prefix:
        return SockJSRouter({prefix: service})
    return service


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m sockjs_asgi`` and of the ``sockjs-asgi`` script."""
    # Like uvicorn: the handler's module is found from the current directory.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    arguments = parse_args(argv)
    try:
        app = build_app(arguments)
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        sys.exit(f"python -m sockjs_asgi: {exc}")
    try:
        import uvicorn
    except ImportError:
        sys.exit("python -m sockjs_asgi needs uvicorn: pip install 'sockjs-asgi[server]'")
    uvicorn.run(app, host=arguments.host, port=arguments.port, log_level=arguments.log_level, lifespan="on")


if __name__ == "__main__":
    main()
