"""The smallest SockJS server: ``uvicorn examples.echo:app``, then connect a SockJS client to
``http://127.0.0.1:8000``."""

from sockjs_asgi import Connection, SockJSApp


async def echo(conn: Connection) -> None:
    async for message in conn:
        await conn.send(message)


app = SockJSApp(echo)
