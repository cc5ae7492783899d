"""The playground under a flooding client, its step and message budgets, its Origin list and its
--host warning.

Loopback only; bounded loops; no bound on elapsed time. The budgets are tested against a fake clock
(the server reads ``time.monotonic`` through its module's ``time``), so the refills are counted, not
raced; the thread pool is tested with a session held in the middle of a step, so "another tab is
served meanwhile" is an ordering, not a latency.
"""

import asyncio
import json
import threading
import types

import aiohttp
import pytest
from typer.testing import CliRunner

from localrules.cli.main import app
from localrules.demo import protocol as P
from localrules.demo import server as S
from localrules.demo.session import Demo
from ws_client import TIMEOUT, next_message, receive, run, ws_url


class FakeClock:
    """``time.monotonic`` for the server module: stands still until ``advance``d."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(S, "time", types.SimpleNamespace(monotonic=fake))
    return fake


async def _paused(ws, digit=None):
    """Pause the tab (its clock sends no more frames); with ``digit``, load it (step count 0)
    and return once that frame came: after it, every message is the answer to one of ours."""
    await receive(ws, "frame")
    await ws.send_str('{"type": "speed", "steps_per_second": 0}')
    await receive(ws, "frame", where=lambda f: f["steps_per_second"] == 0)
    if digit is not None:
        await ws.send_str(json.dumps({"type": "load", "digit": digit}))
        f = await receive(ws, "frame", where=lambda f: f["loaded"] == digit)
        assert f["step"] == 0


async def _answers(ws, n):
    """The next ``n`` messages, as ("frame", step) or ("error", text)."""
    out = []
    for _ in range(n):
        m = await next_message(ws)
        out.append(("frame", m["step"]) if m["type"] == "frame" else ("error", m["error"]))
    return out


def _step(n):
    return json.dumps({"type": "step", "n": n})


# ---------------------------------------------------------------------------- a held session


class _Gate:
    def __init__(self):
        self.entered, self.opened = threading.Event(), threading.Event()


class _Gated:
    """A session whose ``step`` waits at its gate (when it has one) until the test opens it."""

    def __init__(self, inner):
        self.inner, self.gate = inner, None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def step(self, n=1):
        if self.gate is not None:
            self.gate.entered.set()
            self.gate.opened.wait(2 * TIMEOUT)
        self.inner.step(n)


class _GatedDemo(Demo):
    """The playground's demo, each new session wrapped in :class:`_Gated` and kept in ``sessions``."""

    def new_session(self, seed=None):
        session = _Gated(super().new_session(seed))
        self.sessions.append(session)
        return session


def test_a_session_held_in_a_step_does_not_hold_up_another_tab(sc_demo):
    """Tab A's step is held inside the model (in a pool thread) with 10 more of A's messages queued
    behind it; tab B's 5 single steps are all answered meanwhile, and then A's 11 in order.
    Catches: sessions stepped on the event loop, a pool of one thread, or a lock shared by all tabs
    (B would wait for A's gate: its answers would never come while the gate is shut)."""
    demo = _GatedDemo(**vars(sc_demo))
    demo.sessions = []
    server = S.ServerThread(demo, "127.0.0.1", 0).start()
    gate = _Gate()

    async def go():
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(server)) as a:
            await _paused(a, digit=0)  # A's hello came: sessions[0] is A's
            async with s.ws_connect(ws_url(server)) as b:
                await _paused(b, digit=1)
                assert len(demo.sessions) == 2
                demo.sessions[0].gate = gate
                for _ in range(11):
                    await a.send_str(_step(1))
                assert await asyncio.to_thread(gate.entered.wait, TIMEOUT), "A's step never started"
                try:
                    for k in range(1, 6):
                        await b.send_str(_step(1))
                        assert await _answers(b, 1) == [("frame", k)]
                    assert not gate.opened.is_set()  # all of B's answers came while A was held
                finally:
                    gate.opened.set()
                assert await _answers(a, 11) == [("frame", k) for k in range(1, 12)]
    try:
        run(go())
    finally:
        gate.opened.set()
        server.stop()


# ---------------------------------------------------------------------------- budgets


def test_step_budget_is_counted_in_steps_and_refills_only_with_time(sc_server, clock):
    """STEP_BUDGET (400) steps per second, a burst of 400: with the clock standing still two
    messages of 200 are served and every later step is refused, whatever the machine's speed;
    0.25 s later 100 steps are back; 10 s later no more than the burst. Each message gets exactly
    one answer, in order. Catches: no budget, a budget counted per message instead of per step,
    a refill that does not wait for the clock, or one beyond the burst."""
    assert S.STEP_BUDGET == 400 and P.MAX_STEPS_PER_REQUEST == 200

    async def go():
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(sc_server)) as ws:
            await _paused(ws, digit=3)
            await ws.send_str(_step(P.MAX_STEPS_PER_REQUEST + 1))
            assert "[1, 200]" in (await next_message(ws))["error"]  # over the per-message cap
            for _ in range(4):
                await ws.send_str(_step(200))
            await ws.send_str(_step(1))
            got = await _answers(ws, 5)
            assert got[:2] == [("frame", 200), ("frame", 400)], got
            assert [kind for kind, _ in got[2:]] == ["error"] * 3, got
            assert all("at most 400 steps per second" in text for _, text in got[2:])
            clock.advance(0.25)  # 100 steps back
            for n in (100, 1):
                await ws.send_str(_step(n))
            got = await _answers(ws, 2)
            assert got[0] == ("frame", 500) and got[1][0] == "error", got
            clock.advance(10.0)  # refilled, but to the burst of 400 only
            for n in (200, 200, 1):
                await ws.send_str(_step(n))
            got = await _answers(ws, 3)
            assert got[:2] == [("frame", 700), ("frame", 900)] and got[2][0] == "error", got
            await ws.send_str('{"type": "clear"}')  # other messages spend no steps
            assert (await _answers(ws, 1)) == [("frame", 0)]
    run(go())


class _RecordedSleep:
    """The server module's ``asyncio`` with ``sleep`` recorded (the pause of a paced message)."""

    def __init__(self):
        self.sleeps = []

    def __getattr__(self, name):
        return getattr(asyncio, name)

    async def sleep(self, delay, result=None):
        self.sleeps.append(delay)
        return await asyncio.sleep(delay, result)


def test_messages_beyond_the_rate_wait_for_the_clock(sc_server, clock, monkeypatch):
    """MESSAGE_RATE 20: a burst of 20 messages is read at once (two went to pause and load), each
    later one waits 1/20 s first, and 0.5 s of clock lets 10 through again. Every message is
    answered (a faster sender waits, it is not refused). Catches: no rate limit, a burst of another
    size, or a refill that does not follow the clock."""
    monkeypatch.setattr(S, "MESSAGE_RATE", 20.0)
    recorded = _RecordedSleep()
    monkeypatch.setattr(S, "asyncio", recorded)

    async def go():
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(sc_server)) as ws:
            await _paused(ws, digit=2)  # 2 of the burst of 20
            assert recorded.sleeps == []
            for _ in range(30):
                await ws.send_str('{"type": "clear"}')
            assert await _answers(ws, 30) == [("frame", 0)] * 30
            assert recorded.sleeps == [pytest.approx(1 / 20)] * 12  # 18 read at once, 12 waited
            recorded.sleeps.clear()
            clock.advance(0.5)  # 10 tokens back
            for _ in range(12):
                await ws.send_str('{"type": "clear"}')
            assert await _answers(ws, 12) == [("frame", 0)] * 12
            assert recorded.sleeps == [pytest.approx(1 / 20)] * 2
    run(go())


# ---------------------------------------------------------------------------- playground-load, test size


def test_playground_load_at_test_size(sc_server, clock):
    """scripts/playground-load's scene, small and counted: 2 running tabs drawing strokes, a paused
    probe asking for single steps and a tab flooding 200-step messages, all at once. With the
    clock standing still the flood gets exactly its burst (2 frames) and then only refusals, in the
    order sent; the probe gets every step, one frame each, counted 1..20; the running tabs keep
    streaming frames (their clocks run on the event loop's time). Catches: a flood that gets more
    than its budget, answers lost or out of order under load, tabs starved by another tab."""

    async def ordinary(s, digit):
        async with s.ws_connect(ws_url(sc_server)) as ws:
            await receive(ws, "frame")
            await ws.send_str(json.dumps({"type": "load", "digit": digit}))
            await ws.send_str('{"type": "speed", "steps_per_second": 30}')
            for x in (3, 6, 9):
                await ws.send_str(json.dumps({"type": "draw", "points": [[x, 10], [x, 12]], "radius": 1.5}))
            f = await receive(ws, "frame", where=lambda f: f["loaded"] == digit and f["step"] >= 10)
            assert f["alive"] > 0 and f["steps_per_second"] == 30
            return f["step"]

    async def probe(s):
        async with s.ws_connect(ws_url(sc_server)) as ws:
            await _paused(ws, digit=7)
            got = []
            for _ in range(20):
                await ws.send_str(_step(1))
                got += await _answers(ws, 1)
            return got

    async def flood(s):
        async with s.ws_connect(ws_url(sc_server)) as ws:
            await _paused(ws, digit=0)
            for _ in range(40):
                await ws.send_str(_step(200))
            return await _answers(ws, 40)

    async def go():
        async with aiohttp.ClientSession() as s:
            return await asyncio.gather(ordinary(s, 3), ordinary(s, 5), probe(s), flood(s))

    _, _, probed, flooded = run(go())
    assert probed == [("frame", k) for k in range(1, 21)]
    assert flooded[:2] == [("frame", 200), ("frame", 400)], flooded[:3]
    assert [kind for kind, _ in flooded[2:]] == ["error"] * 38


# ---------------------------------------------------------------------------- Origin


def test_origin_is_checked_against_the_allowed_list_not_the_host_header(sc_server):
    port = int(sc_server.url.rsplit(":", 1)[1].strip("/"))

    async def status(origin, host=None):
        headers = {"Origin": origin, **({"Host": host} if host else {})}
        async with aiohttp.ClientSession() as s:
            try:
                async with s.ws_connect(ws_url(sc_server), headers=headers) as ws:
                    await receive(ws, "hello")
                    return 101
            except aiohttp.WSServerHandshakeError as e:
                return e.status

    async def go():
        # a DNS-rebinding page: its Origin and the Host header agree, and both are foreign
        assert await status(f"http://rebind.example:{port}", host=f"rebind.example:{port}") == 403
        assert await status("null") == 403
        assert await status(f"http://127.0.0.1:{port + 1 if port < 65535 else 1}") == 403
        for ok in (f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"http://[::1]:{port}"):
            assert await status(ok) == 101, ok
    run(go())


def test_allow_origin_adds_origins(sc_demo):
    server = S.ServerThread(sc_demo, "127.0.0.1", 0, allow_origins=["http://lan.example:8000", "box.local"]).start()
    try:
        async def status(origin):
            async with aiohttp.ClientSession() as s:
                try:
                    async with s.ws_connect(ws_url(server), headers={"Origin": origin}) as ws:
                        await receive(ws, "hello")
                        return 101
                except aiohttp.WSServerHandshakeError as e:
                    return e.status

        async def go():
            assert await status("http://lan.example:8000") == 101
            assert await status("http://LAN.example:8000/") == 101
            assert await status("http://lan.example:8001") == 403
            assert await status("http://box.local:1234") == 101  # a bare host: any port
            assert await status("http://other.local:8000") == 403
        run(go())
    finally:
        server.stop()


@pytest.mark.parametrize("origin, key", [
    ("http://127.0.0.1:8000", ("127.0.0.1", 8000)), ("HTTP://LocalHost:80", ("localhost", 80)),
    ("http://example.com", ("example.com", 80)), ("https://example.com", ("example.com", 443)),
    ("http://[::1]:9", ("[::1]", 9)), ("lan:8000", ("lan", 8000)), ("lan", ("lan", None)),
    ("null", ("null", None)), ("http://a:99999", None), ("http://a/x", None), ("http://u@a:1", None), ("", None),
])
def test_origin_key(origin, key):
    assert S.origin_key(origin) == key


def test_an_unreadable_allow_origin_is_refused(sc_demo):
    with pytest.raises(ValueError, match="not an origin"):
        S.allowed_origins("127.0.0.1", 8000, ["http://a:99999"])
    res = CliRunner().invoke(app, ["demo", "--allow-origin", "http://a/x", "--port", "0"])
    assert res.exit_code != 0 and "--allow-origin" in res.output and "not an origin" in res.output


# ---------------------------------------------------------------------------- --host


@pytest.mark.parametrize("host, warns", [("0.0.0.0", True), ("::", True), ("192.168.1.5", True),
                                         ("box.local", True), ("127.0.0.1", False), ("localhost", False),
                                         ("::1", False), ("127.0.0.2", False)])
def test_exposure_warning(host, warns):
    text = S.exposure_warning(host)
    assert (text is not None) == warns
    if warns:
        assert "no authentication" in text and "--allow-origin" in text


def test_cli_warns_for_host_0000(monkeypatch, sc_checkpoint):
    calls = []
    monkeypatch.setattr(S, "serve", lambda *a, **kw: calls.append((a, kw)))  # no socket is opened
    res = CliRunner().invoke(app, ["demo", "--checkpoint", str(sc_checkpoint), "--host", "0.0.0.0",
                                   "--port", "0", "--device", "cpu", "--allow-origin", "http://lan:8000"])
    assert res.exit_code == 0, res.output
    assert "no authentication" in res.output
    assert calls and calls[0][1]["allow_origins"] == ["http://lan:8000"]
    res = CliRunner().invoke(app, ["demo", "--checkpoint", str(sc_checkpoint), "--port", "0", "--device", "cpu"])
    assert res.exit_code == 0 and "no authentication" not in res.output


def test_the_console_log_goes_when_the_server_stops(monkeypatch, sc_checkpoint):
    """`demo` shows the session lines on stderr only while it serves: afterwards the logger has no
    handler of its own left, so a later server in this process (another test) logs through
    logging alone, which pytest captures, and no "session N closed" line lands between the dots."""
    import logging

    logger = logging.getLogger("localrules.demo")
    before = list(logger.handlers), logger.level
    seen = []
    monkeypatch.setattr(S, "serve", lambda *a, **kw: seen.append(len(logger.handlers)))
    res = CliRunner().invoke(app, ["demo", "--checkpoint", str(sc_checkpoint), "--port", "0", "--device", "cpu"])
    assert res.exit_code == 0 and seen == [len(before[0]) + 1]  # while serving: the console handler
    assert (list(logger.handlers), logger.level) == before
