# A client of seed 001's task API (Code Intern), written as that seed's laptop client talks to
# its server: `requests` for REST and the log stream, `websocket-client` for /ws/{task_id}.
# tests/seeds.rs runs it against a real victor whose model is the fake provider, and checks
# the JSON report it prints on its last line.
#
#   python3 seed001_client.py URL API_KEY GUIDANCE

import json
import sys

import requests
import websocket

BASE, KEY, GUIDANCE = sys.argv[1], sys.argv[2], sys.argv[3]
HEADERS = {"Authorization": f"Bearer {KEY}"}
WS_HEADERS = [f"Authorization: Bearer {KEY}"]
TIMEOUT = 30


def connect(url):
    return websocket.create_connection(url, header=WS_HEADERS, timeout=TIMEOUT)


def receive(ws):
    """The next JSON message, or ("closed", code, reason) when the server closes."""
    opcode, data = ws.recv_data(control_frame=True)
    if opcode == websocket.ABNF.OPCODE_CLOSE:
        code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
        return {"closed": code, "reason": data[2:].decode("utf-8", "replace")}
    if opcode in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
        return receive(ws)
    return json.loads(data)


def follow(url, until="TASK_COMPLETE", on_message=None):
    """The messages of a task's socket up to its final one."""
    ws = connect(url)
    seen = []
    while True:
        message = receive(ws)
        if "closed" in message:
            seen.append(message)
            break
        if on_message:
            on_message(ws, message)
        seen.append(message)
        if message["type"] in (until, "TASK_FAILED"):
            break
    ws.close()
    return seen


report = {}

# Start a task, as the seed documents it.
started = requests.post(
    f"{BASE}/tasks",
    json={"prompt": "Build an email validator", "answers": ["Use regex pattern matching", ""]},
    headers=HEADERS,
    timeout=TIMEOUT,
)
report["start_status"] = started.status_code
report["started"] = started.json()
task_id = report["started"]["task_id"]
ws_url = report["started"]["websocket_url"]

# Follow it live; intervene once a module exists.
intervened = []


def intervene(ws, message):
    if message["type"] == "MODULE_STARTED" and not intervened:
        ws.send(json.dumps({"type": "INTERVENTION", "guidance": GUIDANCE}))
        intervened.append(message["seq"])


report["live"] = follow(ws_url, on_message=intervene)
report["status"] = requests.get(f"{BASE}/tasks/{task_id}", headers=HEADERS, timeout=TIMEOUT).json()
report["results"] = requests.get(
    f"{BASE}/tasks/{task_id}/results", headers=HEADERS, timeout=TIMEOUT
).json()

# A client that joins after the end gets everything from the start; one that reconnects with
# the last seq it saw gets the rest.
report["late"] = follow(ws_url)
resume_after = report["live"][2]["seq"]
report["resume_after"] = resume_after
report["resumed"] = follow(f"{ws_url}?after={resume_after}")

# The log stream, whole and resumed.
def log_lines(headers):
    lines = []
    with requests.get(
        f"{BASE}/tasks/{task_id}/logs/stream", headers=headers, stream=True, timeout=TIMEOUT
    ) as response:
        report.setdefault("log_content_type", response.headers.get("content-type"))
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                lines.append(line[len("data: "):])
            elif line.startswith("id: "):
                lines.append(f"#id {line[4:]}")
    return lines


report["log"] = log_lines(HEADERS)
report["log_resumed"] = log_lines({**HEADERS, "Last-Event-ID": "3"})

# Bad input gets the seed's error shapes.
bad = requests.post(f"{BASE}/tasks", json={"answers": []}, headers=HEADERS, timeout=TIMEOUT)
report["bad_start"] = [bad.status_code, bad.json()]
missing = requests.get(f"{BASE}/tasks/no-such-task", headers=HEADERS, timeout=TIMEOUT)
report["missing"] = [missing.status_code, missing.json()]
unauthorised = requests.post(f"{BASE}/tasks", json={"prompt": "x"}, timeout=TIMEOUT)
report["unauthorised"] = unauthorised.status_code
ws = connect(f"{BASE.replace('http', 'ws', 1)}/ws/no-such-task")
report["missing_socket"] = [receive(ws), receive(ws)]
ws = connect(ws_url)
first = receive(ws)
ws.send(json.dumps({"type": "PAUSE"}))
ws.send("not json")
answers = []
while len(answers) < 2:
    message = receive(ws)
    if message.get("type") == "ERROR":
        answers.append(message)
report["bad_messages"] = answers
ws.send(json.dumps({"type": "INTERVENTION", "guidance": "too late"}))
while True:
    message = receive(ws)
    if message.get("type") == "ERROR":
        report["late_intervention"] = message
        break
ws.close()
print(json.dumps(report))
