"""A small MCP server for the tests, written with the SDK: ``python mcp_demo_server.py``
serves stdio; ``python mcp_demo_server.py http PORT`` serves streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("demo")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def fail(message: str) -> str:
    """Always fails with ``message``."""
    raise ValueError(message)


@server.tool()
async def wait(seconds: float) -> str:
    """Sleep, then say so."""
    await anyio.sleep(min(seconds, 30.0))
    return "waited"


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
