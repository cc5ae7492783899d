"""The playground's web server (aiohttp): the page, its script, and one WebSocket per tab.

    GET /               the page (static/index.html)
    GET /static/...     app.js
    GET /ws             WebSocket: a hello, then frames; client messages as in protocol.py

Every connection owns a session (its own grid) and a clock task that advances it at the
requested steps per second and streams frames. The model runs in the event loop's thread:
one 28x28 step costs about a millisecond, far below a frame's time. A malformed or oversized
message is answered with an error and the session goes on; messages beyond
``TRANSPORT_LIMIT`` are refused by aiohttp itself, which closes that one connection (1009).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from .protocol import MessageError, apply_message, error, frame, hello, parse_message
from .session import Demo

log = logging.getLogger("localrules.demo")

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_SPEED = {"mnist-selfclassify": 30.0, "restore": 5.0}  # steps per second when a tab opens
FPS = 30.0  # at most this many frames per second while running
TRANSPORT_LIMIT = 4 * 1024 * 1024  # aiohttp closes a connection sending a bigger message
MAX_SESSIONS = 32
SHUTDOWN_TIMEOUT = 2.0

DEMO = web.AppKey("demo", Demo)
SOCKETS = web.AppKey("sockets", set)
_ids = itertools.count(1)


class Connection:
    """One tab: its session, its speed, and the clock that steps it."""

    def __init__(self, demo: Demo, ws: web.WebSocketResponse, seed: int | None = None):
        self.id = next(_ids)
        self.demo, self.ws = demo, ws
        self.session = demo.new_session(seed)
        self.speed = DEFAULT_SPEED.get(demo.task, 30.0)
        self.wake = asyncio.Event()
        self._send_lock = asyncio.Lock()

    async def send(self, text: str) -> None:
        async with self._send_lock:
            if not self.ws.closed:
                await self.ws.send_str(text)

    async def send_frame(self) -> None:
        await self.send(frame(self.session, steps_per_second=self.speed))

    async def clock(self) -> None:
        """Advance the session at ``speed`` steps per second, at most FPS frames per second."""
        loop = asyncio.get_running_loop()
        credit, last = 0.0, loop.time()
        try:
            while not self.ws.closed:
                if self.speed <= 0 or not self.session.running:
                    self.wake.clear()
                    await self.wake.wait()
                    credit, last = 0.0, loop.time()
                    continue
                self.wake.clear()  # a new speed or an edit ends the wait early
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 1.0 / min(FPS, self.speed))
                now = loop.time()
                # a slow machine skips steps rather than piling them up
                credit = min(credit + self.speed * (now - last), self.speed / 2 + 1)
                last = now
                n = int(credit)
                if not n or self.speed <= 0:
                    continue
                credit -= n
                try:
                    self.session.step(n)
                except Exception as e:  # pause this tab, keep the server
                    log.exception("session %d: step failed", self.id)
                    self.speed = 0.0
                    await self.send(error(f"internal error while stepping ({e}); paused", "step"))
                    continue
                await self.send_frame()
        except ConnectionError:  # the tab went away mid-send
            return

    async def handle(self, raw) -> None:
        """One client message: validate, apply, answer with a frame (or an error)."""
        try:
            msg = parse_message(raw, self.demo.task)
        except MessageError as e:
            await self.send(error(str(e), e.request))
            return
        try:
            if msg["type"] == "speed":
                self.speed = msg["steps_per_second"]
            else:
                apply_message(self.session, msg)
        except Exception as e:  # a bug must not end the tab's session
            log.exception("session %d: %s failed", self.id, msg["type"])
            await self.send(error(f"internal error while applying {msg['type']!r}: {e}", msg["type"]))
            return
        self.wake.set()
        await self.send_frame()


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def _same_origin(request: web.Request) -> bool:
    """Browsers send Origin on WebSocket upgrades; refuse other sites' pages (no Origin: a script)."""
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


async def websocket(request: web.Request) -> web.StreamResponse:
    app = request.app
    if not _same_origin(request):
        raise web.HTTPForbidden(text="cross-origin WebSocket refused")
    if len(app[SOCKETS]) >= MAX_SESSIONS:
        raise web.HTTPServiceUnavailable(text=f"at most {MAX_SESSIONS} sessions at once")
    ws = web.WebSocketResponse(max_msg_size=TRANSPORT_LIMIT, heartbeat=30)
    await ws.prepare(request)
    conn = Connection(app[DEMO], ws)
    app[SOCKETS].add(ws)
    clock = asyncio.create_task(conn.clock())
    log.info("session %d opened (%d open)", conn.id, len(app[SOCKETS]))
    try:
        await conn.send(hello(app[DEMO], conn.speed))
        await conn.send_frame()
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await conn.handle(msg.data)
            elif msg.type == WSMsgType.ERROR:
                log.info("session %d: %s", conn.id, ws.exception())
                break
    finally:
        clock.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await clock
        app[SOCKETS].discard(ws)
        log.info("session %d closed (%d open)", conn.id, len(app[SOCKETS]))
    return ws


async def _close_sockets(app: web.Application) -> None:
    for ws in list(app[SOCKETS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


def make_app(demo: Demo) -> web.Application:
    app = web.Application()
    app[DEMO] = demo
    app[SOCKETS] = set()
    app.router.add_get("/", index)
    app.router.add_get("/ws", websocket)
    app.router.add_static("/static/", STATIC)
    app.on_shutdown.append(_close_sockets)
    return app


async def _start(demo: Demo, host: str, port: int) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(make_app(demo), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{bound}/"


def serve(demo: Demo, host: str = "127.0.0.1", port: int = 8000, ready=None) -> None:
    """Serve until Ctrl-C (or SIGTERM); ``ready(url)`` is called once the port is bound.

    Opens no browser. Ctrl-C closes every WebSocket (1001, going away) and returns normally.
    """
    import signal

    async def main():
        runner, url = await _start(demo, host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
        try:
            (ready or print)(url)
            await stop.wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())  # Ctrl-C cancels main(), whose finally shuts the server down
    except KeyboardInterrupt:
        pass
    log.info("server stopped")


class ServerThread(threading.Thread):
    """The server in a background thread (tests, notebooks): ``start()``, ``url``, ``stop()``."""

    def __init__(self, demo: Demo, host: str = "127.0.0.1", port: int = 0):
        super().__init__(daemon=True, name="localrules-demo")
        self.demo, self.host, self.port = demo, host, port
        self.url: str | None = None
        self.failure: BaseException | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    def run(self) -> None:
        async def main():
            self._loop, self._stop_event = asyncio.get_running_loop(), asyncio.Event()
            try:
                runner, self.url = await _start(self.demo, self.host, self.port)
            except BaseException as e:  # noqa: BLE001 - reported by start()
                self.failure = e
                self._ready.set()
                return
            self._ready.set()
            try:
                await self._stop_event.wait()
            finally:
                await runner.cleanup()

        asyncio.run(main())

    def start(self) -> ServerThread:
        super().start()
        self._ready.wait(30)
        if self.failure is not None:
            raise self.failure
        if self.url is None:
            raise RuntimeError("the demo server did not start within 30 s")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop_event is not None and self.is_alive():
            self._loop.call_soon_threadsafe(self._stop_event.set)
        self.join(timeout)
