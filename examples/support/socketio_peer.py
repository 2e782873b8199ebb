# The peer of examples/seedbench.rs: python-socketio (ASGI, under uvicorn) serving seed 004's
# control channel for the same clients: rooms per ?session_id=, `connected`, `ping`
# acknowledged, and HALT / RESUME commands that change the session's state, emit
# `execution:halted` / `execution:resumed` to its room and are acknowledged. It keeps no log:
# what it sends is what seed 004's own server sent.
#
#   python3 socketio_peer.py PORT

import sys
import time
from urllib.parse import parse_qs

import socketio
import uvicorn

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")
app = socketio.ASGIApp(sio)
states = {}


def envelope(kind, session, data):
    return {"type": kind, "session_id": session, "timestamp": time.time(), "data": data}


@sio.event
async def connect(sid, environ, auth):
    session = parse_qs(environ.get("QUERY_STRING", "")).get("session_id", [None])[0]
    await sio.save_session(sid, {"session_id": session})
    if session:
        await sio.enter_room(sid, session)
    await sio.emit("connected", {"sid": sid, "session_id": session}, to=sid)


@sio.event
async def ping(sid, data):
    return {"pong": True, "timestamp": time.time()}


@sio.event
async def command(sid, data):
    session = (await sio.get_session(sid))["session_id"]
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in ("HALT", "RESUME"):
        return {"success": False, "error": f"unknown command {kind}"}
    halted = kind == "HALT"
    states[session] = "paused" if halted else "running"
    name = "execution:halted" if halted else "execution:resumed"
    await sio.emit(name, envelope(name, session, {}), room=session)
    return {"success": True, "command": kind, "status": states[session]}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
