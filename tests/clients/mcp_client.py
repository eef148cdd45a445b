"""Drives `ask mcp` with the official MCP Python SDK's stdio client.

Usage: mcp_client.py ASK_BINARY QUESTION
Prints one JSON object: the negotiated protocol, the tool names, the
first search result and the status tool's structured result.
"""
import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


async def main(ask: str, question: str) -> None:
    server = StdioServerParameters(command=ask, args=["mcp"], env=dict(os.environ))
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            tools = await session.list_tools()
            found = await session.call_tool("search", {"query": question, "k": 2})
            status = await session.call_tool("status", {})
            wrong = await session.call_tool("search", {"query": ""})
            print(json.dumps({
                "protocol": init.protocol_version,
                "server": init.server_info.name,
                "tools": [t.name for t in tools.tools],
                "search_error": found.is_error,
                "results": found.structured_content["results"],
                "status": status.structured_content,
                "empty_query_is_error": wrong.is_error,
            }))


asyncio.run(main(sys.argv[1], sys.argv[2]))
