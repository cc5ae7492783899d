"""WebSocket client helpers shared by the playground tests (imported from the test files' folder)."""

import asyncio
import json

import aiohttp


def run(coro, timeout=20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def receive(ws, kind, timeout=5.0, where=None):
    """The next message of type ``kind`` (optionally satisfying ``where``), skipping others."""
    async def loop():
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            data = json.loads(msg.data)
            if data["type"] == kind and (where is None or where(data)):
                return data
    return await asyncio.wait_for(loop(), timeout)


def ws_url(server):
    return server.url.replace("http://", "ws://") + "ws"
