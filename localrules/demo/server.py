"""The playground's web server (aiohttp): the page, its script, and one WebSocket per tab.

    GET /               the page (static/index.html)
    GET /static/...     app.js
    GET /ws             WebSocket: a hello, then frames; client messages as in protocol.py

Every connection owns a session (its own grid) and a clock task that advances it at the
requested steps per second and streams frames. Everything that touches a session (steps,
edits, frames) runs in a small thread pool, one job at a time per connection, so the event
loop keeps serving other tabs and new connections while a model runs. ``step`` messages may
ask for at most ``protocol.MAX_STEPS_PER_REQUEST`` steps each and ``STEP_BUDGET`` steps per
second per connection (a burst of that many); beyond it they are answered with an error. At
most ``MESSAGE_RATE`` messages per second are read from one connection; a faster sender waits. A
malformed or oversized message is answered with an error and the session goes on; messages
beyond ``TRANSPORT_LIMIT`` are refused by aiohttp itself, which closes that one connection (1009).

WebSocket upgrades whose ``Origin`` is not in the allowed list (the bound host, localhost,
127.0.0.1 and [::1] at the bound port, plus ``allow_origins``) are refused with 403. The
request's own ``Host`` header is not trusted: a DNS-rebinding page has a matching one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
STEP_BUDGET = 400.0  # steps per second (and burst) that one connection's step messages may ask for
MESSAGE_RATE = 100.0  # messages per second (and burst) read from one connection; faster senders wait
WORKERS = max(2, min(4, os.cpu_count() or 2))  # threads that run sessions

DEMO = web.AppKey("demo", Demo)
SOCKETS = web.AppKey("sockets", set)
ORIGINS = web.AppKey("origins", set)
POOL = web.AppKey("pool", ThreadPoolExecutor)
_ids = itertools.count(1)


class Connection:
    """One tab: its session, its speed, and the clock that steps it."""

    def __init__(self, demo: Demo, ws: web.WebSocketResponse, seed: int | None = None,
                 pool: ThreadPoolExecutor | None = None):
        self.id = next(_ids)
        self.demo, self.ws, self.pool = demo, ws, pool
        self.session = demo.new_session(seed)
        self.speed = DEFAULT_SPEED.get(demo.task, 30.0)
        self.wake = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._work_lock = asyncio.Lock()  # one job per session at a time (clock or message)
        self._budget, self._budget_time = STEP_BUDGET, time.monotonic()
        self._tokens, self._tokens_time = MESSAGE_RATE, time.monotonic()

    async def pace(self) -> None:
        """Wait until this tab may send another message (MESSAGE_RATE per second, a burst of as
        many): a flooding tab is not read meanwhile, so TCP slows it down at no cost to others."""
        now = time.monotonic()
        self._tokens = min(MESSAGE_RATE, self._tokens + MESSAGE_RATE * (now - self._tokens_time))
        self._tokens_time = now
        if self._tokens < 1:
            await asyncio.sleep((1 - self._tokens) / MESSAGE_RATE)
            self._tokens, self._tokens_time = 1.0, time.monotonic()
        self._tokens -= 1

    async def work(self, fn):
        """Run ``fn()`` (which touches the session) in the thread pool, after this tab's other jobs."""
        async with self._work_lock:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn)

    def take_steps(self, n: int) -> bool:
        """Spend ``n`` steps of this tab's budget (STEP_BUDGET per second); False if it is short."""
        now = time.monotonic()
        self._budget = min(STEP_BUDGET, self._budget + STEP_BUDGET * (now - self._budget_time))
        self._budget_time = now
        if n > self._budget:
            return False
        self._budget -= n
        return True

    async def send(self, text: str) -> None:
        async with self._send_lock:
            if not self.ws.closed:
                await self.ws.send_str(text)

    def _frame(self) -> str:
        return frame(self.session, steps_per_second=self.speed)

    async def send_frame(self) -> None:
        await self.send(await self.work(self._frame))

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
                    text = await self.work(lambda: (self.session.step(n), self._frame())[1])
                except Exception as e:  # pause this tab, keep the server
                    log.exception("session %d: step failed", self.id)
                    self.speed = 0.0
                    await self.send(error(f"internal error while stepping ({e}); paused", "step"))
                    continue
                await self.send(text)
        except ConnectionError:  # the tab went away mid-send
            return

    async def handle(self, raw) -> None:
        """One client message: validate, apply, answer with a frame (or an error)."""
        try:
            msg = parse_message(raw, self.demo.task)
        except MessageError as e:
            await self.send(error(str(e), e.request))
            return
        if msg["type"] == "step" and not self.take_steps(msg["n"]):
            await self.send(error(f"too many steps: at most {STEP_BUDGET:g} steps per second per tab "
                                  f"(a burst of {STEP_BUDGET:g}); wait and ask again", "step"))
            return
        try:
            if msg["type"] == "speed":
                self.speed = msg["steps_per_second"]
                text = await self.work(self._frame)
            else:
                text = await self.work(lambda: (apply_message(self.session, msg), self._frame())[1])
        except Exception as e:  # a bug must not end the tab's session
            log.exception("session %d: %s failed", self.id, msg["type"])
            await self.send(error(f"internal error while applying {msg['type']!r}: {e}", msg["type"]))
            return
        self.wake.set()
        await self.send(text)


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def origin_key(origin: str) -> tuple[str, int | None] | None:
    """("host", port or None) of an origin ``scheme://host[:port]`` or a bare ``host[:port]``;
    None when it cannot be read. Hosts are lower-cased, IPv6 ones in brackets."""
    text = origin.strip()
    parts = urlsplit(text if "://" in text else "http://" + text)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    host = f"[{host}]" if ":" in host else host.lower()
    if port is None and "://" in text:
        port = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return host, port


def allowed_origins(host: str, port: int, extra=()) -> set[tuple[str, int | None]]:
    """The origins whose pages may open a WebSocket: ``host``, localhost, 127.0.0.1 and [::1] at
    ``port``, and each of ``extra`` (a bare host without a port: any port). Raises ValueError for an unreadable one."""
    keys = {origin_key(f"{h}:{port}") for h in ("localhost", "127.0.0.1", "[::1]")}
    if host and host not in ("0.0.0.0", "::"):
        keys.add(origin_key(f"[{host}]:{port}" if ":" in host else f"{host}:{port}"))
    for o in extra:
        key = origin_key(o)
        if key is None:
            raise ValueError(f"--allow-origin {o!r} is not an origin like http://host:port")
        keys.add(key)
    return keys


def origin_allowed(origin: str | None, allowed: set) -> bool:
    """Browsers send Origin on WebSocket upgrades: it must be in ``allowed`` (no Origin: a script,
    not a page). The request's Host header is not consulted (DNS rebinding forges it)."""
    if origin is None:
        return True
    key = origin_key(origin)
    return key is not None and (key in allowed or (key[0], None) in allowed)


def exposure_warning(host: str) -> str | None:
    """A warning when ``host`` is not a loopback address: the page has no authentication."""
    if host == "localhost":
        return None
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return None
    return (f"warning: --host {host} serves the playground beyond this machine, with no authentication: "
            f"anyone who can reach the port can use it and its CPU. Browsers at other addresses "
            f"also need --allow-origin http://ADDRESS:PORT (the address they open).")


async def websocket(request: web.Request) -> web.StreamResponse:
    app = request.app
    if not origin_allowed(request.headers.get("Origin"), app[ORIGINS]):
        raise web.HTTPForbidden(text="WebSocket from a page of another origin refused (see --allow-origin)")
    if len(app[SOCKETS]) >= MAX_SESSIONS:
        raise web.HTTPServiceUnavailable(text=f"at most {MAX_SESSIONS} sessions at once")
    ws = web.WebSocketResponse(max_msg_size=TRANSPORT_LIMIT, heartbeat=30)
    await ws.prepare(request)
    conn = Connection(app[DEMO], ws, pool=app[POOL])
    app[SOCKETS].add(ws)
    clock = asyncio.create_task(conn.clock())
    log.info("session %d opened (%d open)", conn.id, len(app[SOCKETS]))
    try:
        await conn.send(hello(app[DEMO], conn.speed))
        await conn.send_frame()
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await conn.pace()
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


async def _stop_pool(app: web.Application) -> None:
    app[POOL].shutdown(wait=False, cancel_futures=True)


def make_app(demo: Demo, origins: set | None = None) -> web.Application:
    """The aiohttp app; ``origins`` is the allowed set of :func:`allowed_origins` (filled in by
    :func:`_start` once the port is known when None)."""
    app = web.Application()
    app[DEMO] = demo
    app[SOCKETS] = set()
    app[ORIGINS] = set() if origins is None else origins
    app[POOL] = ThreadPoolExecutor(WORKERS, thread_name_prefix="localrules-demo")
    app.router.add_get("/", index)
    app.router.add_get("/ws", websocket)
    app.router.add_static("/static/", STATIC)
    app.on_shutdown.append(_close_sockets)
    app.on_cleanup.append(_stop_pool)
    return app


async def _start(demo: Demo, host: str, port: int, allow_origins=()) -> tuple[web.AppRunner, str]:
    allowed_origins(host, 0, allow_origins)  # refuse a bad --allow-origin before binding
    app = make_app(demo)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    app[ORIGINS].update(allowed_origins(host, bound, allow_origins))
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{bound}/"


def serve(demo: Demo, host: str = "127.0.0.1", port: int = 8000, ready=None, allow_origins=()) -> None:
    """Serve until Ctrl-C (or SIGTERM); ``ready(url)`` is called once the port is bound.

    Opens no browser. Ctrl-C closes every WebSocket (1001, going away) and returns normally.
    """
    import signal

    async def main():
        runner, url = await _start(demo, host, port, allow_origins)
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

    def __init__(self, demo: Demo, host: str = "127.0.0.1", port: int = 0, allow_origins=()):
        super().__init__(daemon=True, name="localrules-demo")
        self.demo, self.host, self.port, self.allow_origins = demo, host, port, tuple(allow_origins)
        self.url: str | None = None
        self.failure: BaseException | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    def run(self) -> None:
        async def main():
            self._loop, self._stop_event = asyncio.get_running_loop(), asyncio.Event()
            try:
                runner, self.url = await _start(self.demo, self.host, self.port, self.allow_origins)
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
