"""Several channels over one SockJS connection, in the websocket-multiplex format.

Browsers limit connections per host, so an application with several independent streams of
messages often multiplexes them over one SockJS connection.  The websocket-multiplex client
library (the one sockjs-tornado's multiplexing example uses) frames every message as
``type,topic,payload``: ``sub,TOPIC`` subscribes, ``uns,TOPIC`` unsubscribes, and
``msg,TOPIC,PAYLOAD`` carries a message either way.

This server offers two topics: ``echo`` answers the sender alone, ``chat`` goes to every
subscriber, through the room of the same name.  Run it with ``uvicorn examples.multiplex:app``.
"""

from __future__ import annotations

from sockjs_asgi import Connection, SockJSApp

TOPICS = ("echo", "chat")


def frame(kind: str, topic: str, payload: str = "") -> str:
    return f"{kind},{topic},{payload}" if kind == "msg" else f"{kind},{topic}"


async def multiplex(conn: Connection) -> None:
    async for message in conn:
        kind, _, rest = message.partition(",")
        topic, _, payload = rest.partition(",")
        if topic not in TOPICS:
            # The client library's answer to a topic nobody serves: unsubscribe it.
            await conn.send(frame("uns", topic))
        elif kind == "sub":
            conn.join(topic)
        elif kind == "uns":
            conn.leave(topic)
        elif kind == "msg" and topic in conn.rooms:
            if topic == "echo":
                await conn.send(frame("msg", "echo", payload))
            else:
                await conn.app.broadcast(frame("msg", "chat", payload), room="chat")


app = SockJSApp(multiplex)
