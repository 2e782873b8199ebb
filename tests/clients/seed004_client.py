# A client of seed 004's control channel (Shannon's dashboard) with python-socketio: REST for
# sessions and skills, Socket.IO for a session's room, its events and its commands.
# tests/seeds.rs runs it against a real victor whose model is the fake provider, and checks the
# JSON report it prints on its last line.
#
#   python3 seed004_client.py URL API_KEY

import json
import sys
import threading
import time

import requests
import socketio

BASE, KEY = sys.argv[1], sys.argv[2]
HEADERS = {"Authorization": f"Bearer {KEY}"}
TIMEOUT = 30
report = {}
# What the server said when it refused a connection (connect_error).
refusals = []


class Follower:
    """One Socket.IO connection to a session's room, recording every event it gets."""

    def __init__(self, session_id, after=None, auth=None):
        self.events = []
        self.changed = threading.Condition()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("*", self.record)
        self.sio.on("connect_error", refusals.append)
        auth = auth if auth is not None else {"token": KEY}
        if after is not None:
            auth = {**auth, "after": after}
        query = f"?session_id={session_id}" if session_id else ""
        self.sio.connect(f"{BASE}{query}", auth=auth, wait_timeout=TIMEOUT)

    def record(self, event, data):
        with self.changed:
            self.events.append([event, data])
            self.changed.notify_all()

    def wait_for(self, event, count=1, **fields):
        """The count-th event of this name whose data has these fields."""
        deadline = time.time() + TIMEOUT
        with self.changed:
            while True:
                found = [
                    data
                    for name, data in self.events
                    if name == event
                    and all(data["data"].get(k) == v for k, v in fields.items())
                ]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError(f"no {event} {fields}: {json.dumps(self.events)}")
                self.changed.wait(left)

    def command(self, **command):
        return self.sio.call("command", command, timeout=TIMEOUT)

    def seen(self):
        """(type, seq) of the session's events, in order."""
        return [[data["type"], data["seq"]] for name, data in self.events if name != "connected"]

    def close(self):
        self.sio.disconnect()


# REST: the skills and a new session.
skills = requests.get(f"{BASE}/api/skills", headers=HEADERS, timeout=TIMEOUT).json()
report["skills"] = [skill["name"] for skill in skills["skills"]]
created = requests.post(
    f"{BASE}/api/sessions", json={"prompt": "Keep notes"}, headers=HEADERS, timeout=TIMEOUT
)
report["created_status"] = created.status_code
session = created.json()
session_id = session["session_id"]
report["session"] = session
report["listed"] = [
    s["session_id"]
    for s in requests.get(f"{BASE}/api/sessions", headers=HEADERS, timeout=TIMEOUT).json()[
        "sessions"
    ]
]

# Join the session's room; answer its decision point, then drop off.
first = Follower(session_id)
report["connected"] = first.wait_for("connected")
point = first.wait_for("decision:point")
report["decision_point"] = point
report["decision_ack"] = first.command(type="DECISION", decision="approve_always")
first_seen = first.seen()
first.close()

# Reconnect with the last seq seen, after the events of the decision went by without us.
time.sleep(0.3)
second = Follower(session_id, after=first_seen[-1][1])
report["ping_ack"] = second.sio.call("ping", {}, timeout=TIMEOUT)
report["halt_ack"] = second.command(type="HALT", reason="look")
second.wait_for("execution:halted")
# The step in flight finishes; then roll back its change and the one before.
second.wait_for("file:created", path="other.txt")
report["rollback_ack"] = second.command(type="ROLLBACK", steps=2)
second.wait_for("checkpoint:restored")
report["redirect_ack"] = second.command(type="REDIRECT", instruction="Stop after this")
report["resume_ack"] = second.command(type="RESUME")
second.wait_for("execution:resumed")
second.wait_for("agent:completed")
second_seen = second.seen()

# Bad input answers in the dialect's shapes, and the socket stays.
report["unknown_command"] = second.command(type="LAUNCH")
report["malformed_command"] = second.sio.call("command", "halt", timeout=TIMEOUT)
report["unknown_event"] = second.sio.call("launch", {}, timeout=TIMEOUT)
report["finished_halt"] = second.command(type="HALT")
report["still_connected"] = second.sio.connected
second.close()

# One client that joins late sees it all: the two connections together saw exactly that.
late = Follower(session_id)
late.wait_for("agent:completed")
report["full"] = late.seen()
report["joined"] = first_seen + second_seen
report["event_types"] = sorted({name for name, _ in late.events})
late.close()

# Refused connections say why.
for name, session, auth in [
    ("unknown_session", "no-such-session", None),
    ("no_key", session_id, {}),
]:
    refusals.clear()
    try:
        Follower(session, auth=auth).close()
        report[name] = "connected"
    except socketio.exceptions.ConnectionError:
        report[name] = list(refusals)

deleted = requests.delete(f"{BASE}/api/sessions/{session_id}", headers=HEADERS, timeout=TIMEOUT)
report["deleted"] = [deleted.status_code, deleted.json()]
missing = requests.get(f"{BASE}/api/sessions/{session_id}", headers=HEADERS, timeout=TIMEOUT)
report["missing"] = [missing.status_code, missing.json()]
print(json.dumps(report))
