"""The playground server over real HTTP and WebSockets (aiohttp client, no browser), and the CLI."""

import os
import signal
import subprocess
import sys
import threading

import aiohttp
import pytest
from localrules.cli.main import app
from typer.testing import CliRunner

from localrules.demo import protocol as P
from ws_client import TIMEOUT, receive, run, ws_url

runner = CliRunner()


def test_page_and_script_are_served(sc_server):
    async def go():
        async with aiohttp.ClientSession() as s:
            async with s.get(sc_server.url) as r:
                assert r.status == 200 and "localrules playground" in await r.text()
            async with s.get(sc_server.url + "static/app.js") as r:
                assert r.status == 200 and "localrulesDemo" in await r.text()
            async with s.get(sc_server.url + "static/../session.py") as r:
                assert r.status in (403, 404)
    run(go())


def test_websocket_session_errors_keep_it_going(sc_server):
    async def go():
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(sc_server)) as ws:
            hello = await receive(ws, "hello")
            assert hello["task"] == "mnist-selfclassify" and hello["default_palette"] == P.DEFAULT_PALETTE
            assert hello["palettes"][P.DEFAULT_PALETTE][0] == "#CC6677"
            await receive(ws, "frame")
            await ws.send_str('{"type": "speed", "steps_per_second": 0}')  # paused: only answers
            await receive(ws, "frame", where=lambda f: f["steps_per_second"] == 0)
            bad = {"{not json": ("malformed JSON", None),
                   '{"type": "load", "digit": 12}': ("'digit' must be an integer in [0, 9], got 12", "load"),
                   "x" * (P.MAX_MESSAGE_BYTES + 10): ("message too large", None)}
            for raw, (text, request) in bad.items():  # each answered with its own reason
                await ws.send_str(raw)
                err = await receive(ws, "error")
                assert text in err["error"] and err.get("request") == request, err
            await ws.send_bytes(b"\x00\x01")
            assert "binary" in (await receive(ws, "error"))["error"]
            await ws.send_str('{"type": "load", "digit": 4}')
            f = await receive(ws, "frame")
            assert f["loaded"] == 4 and f["alive"] > 0 and f["step"] == 0
            await ws.send_str('{"type": "step", "n": 3}')
            f = await receive(ws, "frame")
            assert f["step"] == 3
            await ws.send_str('{"type": "speed", "steps_per_second": 120}')  # running: frames stream
            f = await receive(ws, "frame", where=lambda f: f["step"] >= 10)
            assert f["agreement"] is not None
    run(go())


def test_each_connection_has_its_own_grid(sc_server):
    async def go():
        async with (aiohttp.ClientSession() as s, s.ws_connect(ws_url(sc_server)) as a,
                    s.ws_connect(ws_url(sc_server)) as b):
            for ws in (a, b):
                await receive(ws, "frame")
                await ws.send_str('{"type": "speed", "steps_per_second": 0}')
                await receive(ws, "frame", where=lambda f: f["steps_per_second"] == 0)
            await a.send_str('{"type": "load", "digit": 8}')
            assert (await receive(a, "frame"))["alive"] > 0
            await b.send_str('{"type": "step"}')
            f = await receive(b, "frame")
            assert f["alive"] == 0 and f["loaded"] is None and f["step"] == 1
    run(go())


def test_cross_origin_websocket_is_refused(sc_server):
    async def go():
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await s.ws_connect(ws_url(sc_server), headers={"Origin": "http://evil.example"})
            assert e.value.status == 403
    run(go())


def test_restore_session_runs_to_the_end(restore_server):
    async def go():
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(restore_server)) as ws:
            hello = await receive(ws, "hello")
            assert hello["task"] == "restore" and hello["steps_per_second"] == 5
            await ws.send_str('{"type": "speed", "steps_per_second": 60}')
            await ws.send_str('{"type": "load", "digit": 2}')
            await receive(ws, "frame", where=lambda f: f["loaded"] == 2)
            await ws.send_str('{"type": "knockout", "fraction": 0.7}')
            f = await receive(ws, "frame", where=lambda f: not f["running"])
            assert f["step"] == f["max_steps"] == 10 and f["psnr_db"] is not None
    run(go())


# ---------------------------------------------------------------------------- CLI


def test_demo_help_and_missing_checkpoints(tmp_path):
    res = runner.invoke(app, ["demo", "--help"])
    assert res.exit_code == 0
    for opt in ("--checkpoint", "--port", "--host", "--device", "--data-dir"):
        assert opt in res.output
    res = runner.invoke(app, ["demo", "mnist-selfclassify", "--checkpoint", str(tmp_path / "no.safetensors")])
    assert res.exit_code != 0 and "--checkpoint" in res.output and "no checkpoint" in res.output
    res = runner.invoke(app, ["demo", "restore", "--checkpoint", str(tmp_path)])
    assert res.exit_code != 0 and "--checkpoint" in res.output and "hybrid" in res.output


def _foreground():
    """In the child: SIGINT handled as in a terminal's foreground job. A job started with `&` (a CI
    script's background step, a busy-loop harness) inherits SIGINT ignored, and Python then leaves
    it ignored: such a server stops on SIGTERM, the other parametrisation."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_cli_serves_and_stops_cleanly_on_ctrl_c(sc_checkpoint, tmp_path, sig):
    """The real command: serves on a free port, keeps a tab open, and exits 0 on Ctrl-C (SIGINT)
    or SIGTERM, closing the tab with 1001 (going away)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LOCALRULES_DATA": str(tmp_path),
           "LOCALRULES_CACHE": str(tmp_path)}  # no MNIST here: the scikit-learn fallback, no download
    cmd = [sys.executable, "-c", "from localrules.cli.main import cli; cli()", "demo",
           "--checkpoint", str(sc_checkpoint), "--port", "0", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=_foreground)
    guard = threading.Timer(300, proc.kill)  # a hung server ends the test (readline then gives "")
    guard.start()
    try:
        lines, url = [], None
        while url is None:  # until the server says where it is, or exits (then readline gives "")
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "playground at" in line:
                url = line.split("playground at ")[1].split()[0]
        assert url and url.startswith("http://127.0.0.1:"), "".join(lines)
        assert any("scikit-learn" in ln for ln in lines), "".join(lines)

        # The code is read off the server's close frame (msg.data), not from ws.close_code: aiohttp
        # sets close_code to 1006 when its automatic reply hits a connection the server has
        # already closed, a race that load decides.
        async def go():
            async with aiohttp.ClientSession() as s, s.ws_connect(url.replace("http", "ws") + "ws") as ws:
                await receive(ws, "hello")
                proc.send_signal(sig)
                msg = await ws.receive(timeout=TIMEOUT)
                while msg.type == aiohttp.WSMsgType.TEXT:  # frames still in flight
                    msg = await ws.receive(timeout=TIMEOUT)
                assert msg.type == aiohttp.WSMsgType.CLOSE, msg
                return msg.data
        try:
            code = run(go())
        except BaseException as e:  # the server's own log goes with the failure
            proc.kill()
            raise AssertionError("".join(lines) + proc.communicate()[0]) from e
        out, _ = proc.communicate(timeout=120)
        out = "".join(lines) + out
        assert code == aiohttp.WSCloseCode.GOING_AWAY, out
        assert proc.returncode == 0, out
        assert "Traceback" not in out and "server stopped" in out
    finally:
        guard.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_playground_serves_the_robust_model_by_default():
    """Drawn digits are off-centre, scaled, slanted and thinner or thicker: the robust model's
    card measures it better on such digits than the paper's model."""
    from localrules.cli.demo import DemoTask, _checkpoint

    path = _checkpoint(DemoTask.mnist_selfclassify, None)
    assert path.name == "mnist-selfclassify-robust.safetensors" and path.is_file()
