# Drives victor with the official MCP Python SDK (`mcp` from PyPI), for tests/mcp.rs: over
# Streamable HTTP (`http URL KEY`) or through `victor mcp` on stdio (`stdio VICTOR URL KEY`, or
# `remote VICTOR NAME` for a server kept with `victor remote add`), it
# runs one scenario and prints what it saw as one JSON object; the Rust test judges it.

import asyncio
import json
import os
import sys
from contextlib import asynccontextmanager

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from pydantic import AnyUrl


class Proxy:
    """A TCP relay in front of the server whose connections can be cut, as a lost WiFi does."""

    def __init__(self, host, port):
        self.upstream = (host, port)
        self.writers = []
        self.cuts = 0

    async def start(self):
        self.server = await asyncio.start_server(self.relay, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def relay(self, client_reader, client_writer):
        server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        self.writers += [client_writer, server_writer]

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.transport.abort()

        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

    def cut(self):
        self.cuts += 1
        for writer in self.writers:
            writer.transport.abort()
        self.writers = []


# The URIs of the resource updates the server sent.
updated = []


async def on_message(message):
    root = getattr(message, "root", None)
    if getattr(root, "method", None) == "notifications/resources/updated":
        updated.append(str(root.params.uri))


@asynccontextmanager
async def connect(mode, args):
    if mode == "http":
        url, key = args
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with create_mcp_http_client(headers=headers) as http:
            async with streamable_http_client(url + "/mcp", http_client=http) as (read, write, _):
                async with ClientSession(read, write, message_handler=on_message) as session:
                    await session.initialize()
                    yield session
    else:
        if mode == "stdio":
            # `victor mcp` with the server and key from its variables.
            victor, url, key = args
            env = dict(os.environ, VICTOR_SERVER=url, VICTOR_API_KEY=key)
            victor_args = ["mcp"]
        else:
            # `victor mcp --server NAME`: a remote kept with `victor remote add`.
            victor, name = args
            env = {k: v for k, v in os.environ.items()
                   if k not in ("VICTOR_SERVER", "VICTOR_API_KEY")}
            victor_args = ["mcp", "--server", name]
        params = StdioServerParameters(command=victor, args=victor_args, env=env)
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write, message_handler=on_message) as session:
                await session.initialize()
                yield session


def text_of(result):
    return "".join(c.text for c in result.content if c.type == "text")


async def basics(session):
    """Lists tools, starts a task, waits for it, reads its log in pieces and as a resource,
    and follows a longer one with progress."""
    seen = {}
    tools = await session.list_tools()
    seen["tools"] = sorted(tool.name for tool in tools.tools)
    started = await session.call_tool(
        "start_task", {"command": "printf 'alpha\\nbeta\\ngamma\\n'"})
    task = started.structuredContent["task"]["id"]
    seen["task"] = task
    waited = await session.call_tool("wait_task", {"task_id": task, "after": 0})
    seen["waited"] = text_of(waited)
    first = await session.call_tool("read_log", {"task_id": task, "max_bytes": 6})
    rest = await session.call_tool(
        "read_log", {"task_id": task, "after": first.structuredContent["next_after"],
                     "offset": first.structuredContent["next_offset"]})
    seen["log_pieces"] = [first.structuredContent["text"], rest.structuredContent["text"]]
    seen["log_more"] = [first.structuredContent["more"], rest.structuredContent["more"]]
    resource = await session.read_resource(AnyUrl(f"victor://tasks/{task}/log"))
    seen["resource"] = resource.contents[0].text
    progress = []

    async def on_progress(value, total, message):
        progress.append([value, message])

    long = await session.call_tool(
        "start_task",
        {"command": "for i in 1 2 3 4 5; do echo step $i; sleep 0.1; done", "wait": True},
        progress_callback=on_progress)
    seen["long"] = text_of(long)
    seen["progress"] = progress
    missing = await session.call_tool("show_task", {"task_id": "no-such-task"})
    seen["missing"] = [missing.isError, text_of(missing)]
    refused = await session.call_tool("pause_task", {"task_id": task})
    seen["refused"] = [refused.isError, text_of(refused)]
    return seen


async def read_only(session):
    """What a read key sees and may do."""
    tools = await session.list_tools()
    started = await session.call_tool("start_task", {"command": "echo nope"})
    listed = await session.call_tool("list_tasks", {})
    return {
        "tools": sorted(tool.name for tool in tools.tools),
        "start": [started.isError, text_of(started)],
        "list": [listed.isError, text_of(listed)],
    }


async def agent(session):
    """An agent run whose command waits for approval, given through MCP; then a chat and a
    diagram. The agent's log is subscribed to as a resource meanwhile."""
    seen = {}
    workspace = os.environ["MCP_TEST_WORKSPACE"]
    started = await session.call_tool(
        "start_agent", {"prompt": "Write the file", "workspace": workspace})
    task = started.structuredContent["task"]["id"]
    uri = f"victor://tasks/{task}/log"
    await session.subscribe_resource(AnyUrl(uri))
    pending = []
    for _ in range(200):
        listed = await session.call_tool("list_approvals", {"task_id": task})
        pending = listed.structuredContent["approvals"]
        if pending:
            break
        await asyncio.sleep(0.05)
    seen["approval_tool"] = pending[0]["tool"]
    answered = await session.call_tool(
        "answer_approval", {"approval_id": pending[0]["id"], "decision": "allow_once"})
    seen["answered"] = text_of(answered)
    waited = await session.call_tool("wait_task", {"task_id": task, "after": 0})
    seen["agent"] = text_of(waited)
    seen["agent_state"] = waited.structuredContent["task"]["state"]
    seen["updated"] = sorted(set(updated))
    chat = await session.call_tool("chat", {"message": "say hello back"})
    seen["chat"] = text_of(chat)
    rendered = await session.call_tool(
        "render_diagram", {"type": "graphviz", "source": "digraph { alpha -> beta }"})
    resources = [c.resource for c in rendered.content if c.type == "resource"]
    seen["diagram"] = [resources[0].mimeType, resources[0].text]
    return seen


async def code(session):
    """run_code: a new session, the same one again (its variables kept), and code that
    raises."""
    first = await session.call_tool("run_code", {"code": "x = 6 * 7\nprint(x)"})
    sid = first.structuredContent["session_id"]
    second = await session.call_tool("run_code", {"code": "x + 1", "session_id": sid})
    failed = await session.call_tool("run_code", {"code": "1 / 0", "session_id": sid})
    return {"first": text_of(first), "session": sid, "second": text_of(second),
            "result": second.structuredContent["execution"]["result"],
            "failed": text_of(failed), "failed_is_error": failed.isError}


async def restart(session):
    """A long call through `victor mcp` during which the server restarts: the call still gets
    its answer, every log event once, and the next call finds a new session opened for it.
    Prints `ready` when the test should restart the server."""
    progress = []

    async def on_progress(value, total, message):
        progress.append([value, message])
        if len(progress) == 3:
            print("ready", flush=True)

    result = await session.call_tool(
        "start_task",
        {"command": "for i in $(seq 1 100); do echo line $i; sleep 0.1; done", "wait": True},
        progress_callback=on_progress)
    listed = await session.call_tool("list_tasks", {})
    return {"progress": progress, "result": text_of(result),
            "task": result.structuredContent["task"], "listed": text_of(listed)}


async def resumed(url, key):
    """A long call whose connection is cut after a few lines: the SDK takes the stream up
    again with Last-Event-ID, and every line arrives once."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    proxy = Proxy(host, int(port))
    proxied = f"http://127.0.0.1:{await proxy.start()}"
    progress = []

    async def on_progress(value, total, message):
        progress.append([value, message])
        if len(progress) == 8 and proxy.cuts == 0:
            proxy.cut()

    async with connect("http", (proxied, key)) as session:
        result = await session.call_tool(
            "start_task",
            {"command": "for i in $(seq 1 30); do echo line $i; sleep 0.05; done",
             "wait": True},
            progress_callback=on_progress)
        return {"cuts": proxy.cuts, "progress": progress, "result": text_of(result),
                "task": result.structuredContent["task"]}


async def main():
    scenario, mode, *args = sys.argv[1:]
    if scenario == "resumed":
        seen = await resumed(*args)
    else:
        async with connect(mode, args) as session:
            scenarios = {"basics": basics, "read_only": read_only, "agent": agent,
                         "restart": restart, "code": code}
            seen = await scenarios[scenario](session)
    print(json.dumps(seen))


asyncio.run(main())
