"""A small MCP server for victor's agents to use in tests, written with the official Python SDK
(FastMCP). `stdio` serves on stdin and stdout; `http` serves Streamable HTTP at /mcp on a port
of its own, which it prints first."""

import asyncio
import os
import socket
import sys

from mcp.server.fastmcp import Context, FastMCP

mcp = FastMCP("fixture")


@mcp.tool()
def add(a: int, b: int) -> str:
    """Add two whole numbers."""
    return f"{a} + {b} = {a + b}"


@mcp.tool()
def greet() -> str:
    """Say the greeting this server was started with (FIXTURE_GREETING)."""
    return os.environ.get("FIXTURE_GREETING", "no greeting")


@mcp.tool()
def whoami(ctx: Context) -> str:
    """The Authorization header this call came with (over HTTP)."""
    request = ctx.request_context.request
    return request.headers.get("authorization", "none") if request else "stdio"


@mcp.tool()
def die() -> str:
    """Exit in the middle of the call."""
    os._exit(3)


@mcp.tool()
async def hang() -> str:
    """Never answer."""
    await asyncio.sleep(3600)
    return "too late"


async def serve_http():
    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    config = uvicorn.Config(mcp.streamable_http_app(), log_level="warning")
    await uvicorn.Server(config).serve(sockets=[listener])


if sys.argv[1] == "http":
    asyncio.run(serve_http())
else:
    mcp.run()
