"""Benchmarks of sockjs-asgi; run with ``python -m benchmarks`` (or ``nox -s bench``)."""
