"""The playground under a flooding client, its step caps, its Origin list and its --host warning.

Loopback only; bounded loops; the one time bound is generous (seconds, where the flood it is
measured against takes longer than that on the event loop).
"""

import asyncio
import json
import time

import aiohttp
import pytest
from typer.testing import CliRunner

from localrules.cli.main import app
from localrules.demo import protocol as P
from ws_client import receive, run, ws_url
from localrules.demo import server as S



async def _paused(ws):
    await receive(ws, "frame")
    await ws.send_str('{"type": "speed", "steps_per_second": 0}')
    await receive(ws, "frame", where=lambda f: f["steps_per_second"] == 0)


async def _round_trip(ws) -> float:
    t = time.monotonic()
    await ws.send_str('{"type": "step", "n": 1}')
    await receive(ws, "frame", timeout=60)
    return time.monotonic() - t


def test_a_flooding_client_does_not_freeze_another(sc_server, monkeypatch):
    """Without a step budget, client A queues 40 x 200 steps (several seconds of model time);
    client B's single steps still come back within 1.5 s each (on the event loop they waited
    for the whole flood)."""
    monkeypatch.setattr(S, "STEP_BUDGET", 1e9)

    async def go():
        async with (aiohttp.ClientSession() as s, s.ws_connect(ws_url(sc_server)) as a,
                    s.ws_connect(ws_url(sc_server)) as b):
            for ws in (a, b):
                await _paused(ws)
            await a.send_str('{"type": "load", "digit": 0}')
            await receive(a, "frame", where=lambda f: f["loaded"] == 0)
            await b.send_str('{"type": "load", "digit": 1}')
            await receive(b, "frame", where=lambda f: f["loaded"] == 1)
            t = time.monotonic()
            a_step = await _round_trip(a)  # the cost of one step for scale
            flood = json.dumps({"type": "step", "n": P.MAX_STEPS_PER_REQUEST})
            for _ in range(40):
                await a.send_str(flood)
            trips = [await _round_trip(b) for _ in range(5)]
            f = await receive(a, "frame", timeout=60)  # A's flood is being served meanwhile
            assert f["step"] >= 1 + P.MAX_STEPS_PER_REQUEST
            assert max(trips) < 1.5, (trips, a_step, time.monotonic() - t)
    run(go(), timeout=120)


def test_step_messages_are_capped_per_message_and_per_second(sc_server):
    async def go():
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(sc_server)) as ws:
            await _paused(ws)
            await ws.send_str(json.dumps({"type": "step", "n": P.MAX_STEPS_PER_REQUEST + 1}))
            assert "[1, 200]" in (await receive(ws, "error"))["error"]
            t0 = time.monotonic()
            for _ in range(20):
                await ws.send_str(json.dumps({"type": "step", "n": P.MAX_STEPS_PER_REQUEST}))
            frames, errors = [], []
            for _ in range(20):  # each message gets one answer: a frame or an error
                msg = json.loads((await ws.receive(timeout=60)).data)
                (frames if msg["type"] == "frame" else errors).append(msg)
            elapsed = time.monotonic() - t0
            assert errors and all("steps per second" in e["error"] for e in errors)
            steps = max(f["step"] for f in frames)
            assert steps <= S.STEP_BUDGET * (1 + elapsed), (steps, elapsed)
    run(go(), timeout=120)


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


def test_messages_beyond_the_rate_wait(sc_server, monkeypatch):
    """With MESSAGE_RATE 20, the answers to 30 messages cannot all come within 0.45 s: the last
    10 wait for the budget (a lower bound: sleeping cannot be faster)."""
    monkeypatch.setattr(S, "MESSAGE_RATE", 20.0)

    async def go():
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(sc_server)) as ws:
            await _paused(ws)
            await asyncio.sleep(1.0)  # the budget refills to its burst of 20
            t = time.monotonic()
            for _ in range(30):
                await ws.send_str('{"type": "clear"}')
            for _ in range(30):
                await receive(ws, "frame", timeout=30)
            assert time.monotonic() - t >= 0.45
    run(go(), timeout=60)
