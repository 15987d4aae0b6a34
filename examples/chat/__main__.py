"""``python -m examples.chat [--host 127.0.0.1] [--port 8000]``: serve the chat with uvicorn."""

from __future__ import annotations

import argparse

import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.chat", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    arguments = parser.parse_args()
    uvicorn.run("examples.chat.app:app", host=arguments.host, port=arguments.port)


if __name__ == "__main__":
    main()
