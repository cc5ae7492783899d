"""WebSocket client helpers shared by the playground tests (imported from the test files' folder).

Waits are for a condition, with timeouts long enough for a loaded machine: a timeout only says how
long a failing test takes to report, never how fast a passing one must be.
"""

import asyncio
import json

import aiohttp

TIMEOUT = 60.0  # seconds one awaited message may take (generous: the CI runner may be busy)


def run(coro, timeout=300):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def next_message(ws, timeout=TIMEOUT):
    """The very next message, whatever its type (for tests of the order of answers)."""
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def receive(ws, kind, timeout=TIMEOUT, where=None):
    """The next message of type ``kind`` (optionally satisfying ``where``), skipping others."""
    async def loop():
        while True:
            data = await next_message(ws, timeout=None)
            if data["type"] == kind and (where is None or where(data)):
                return data
    return await asyncio.wait_for(loop(), timeout)


def ws_url(server):
    return server.url.replace("http://", "ws://") + "ws"
