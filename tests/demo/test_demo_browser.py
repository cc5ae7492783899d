"""End to end in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Skipped, with the reason, when chromium or playwright is missing or chromium cannot start.
Set LOCALRULES_DEMO_SCREENSHOT=docs/playground.png to also copy the screenshot there.
"""

import os
import shutil
from pathlib import Path

import pytest

from localrules.demo.protocol import DEFAULT_PALETTE, PALETTES

TIMEOUT_MS = 60_000  # how long a condition may take to come true (never how fast it must: a busy CI runner)

# cells of the #grid canvas whose colour (at the cell's centre) is one of the given colours
COUNT_CELLS = """(colours) => {
  const c = document.getElementById('grid'), ctx = c.getContext('2d');
  const px = ctx.getImageData(0, 0, c.width, c.height).data, s = c.width / 28;
  const want = new Set(colours.map((h) => parseInt(h.slice(1), 16)));
  let n = 0;
  for (let i = 0; i < 28; i++) for (let j = 0; j < 28; j++) {
    const k = 4 * (Math.floor((i + 0.5) * s) * c.width + Math.floor((j + 0.5) * s));
    if (want.has((px[k] << 16) | (px[k + 1] << 8) | px[k + 2])) n++;
  }
  return n;
}"""


@pytest.fixture
def page(browser, sc_server):
    ctx = browser.new_context(viewport={"width": 1060, "height": 600})
    p = ctx.new_page()
    p.set_default_timeout(TIMEOUT_MS)
    p.goto(sc_server.url)
    p.wait_for_function("window.localrulesDemo && window.localrulesDemo.hello && window.localrulesDemo.frames > 0")
    yield p
    ctx.close()


def label_cells(page, palette=DEFAULT_PALETTE):
    return page.evaluate(COUNT_CELLS, PALETTES[palette])


def wait_label_cells(page, at_least, palette=DEFAULT_PALETTE):
    page.wait_for_function(f"(c) => ({COUNT_CELLS})(c) >= {at_least}", arg=PALETTES[palette],
                           timeout=TIMEOUT_MS)
    return label_cells(page, palette)


def test_digit_button_makes_alive_cells_take_label_colours(page, tmp_path):
    assert page.locator("#palette").input_value() == DEFAULT_PALETTE
    assert page.locator("#legend .entry").count() == 10
    page.eval_on_selector("#speed", "(s) => { s.value = 120; s.dispatchEvent(new Event('input')); }")
    page.wait_for_function("localrulesDemo.lastFrame.steps_per_second === 120")
    page.click("#digits button[data-digit='3']")
    page.wait_for_function("localrulesDemo.lastFrame.loaded === 3 && localrulesDemo.lastFrame.step >= 100")
    n = wait_label_cells(page, 30)
    alive = page.evaluate("localrulesDemo.lastFrame.alive")
    assert abs(n - alive) <= 2, (n, alive)  # every alive cell, and only they, wear a label colour
    assert "agree on" in page.inner_text("#stat-line")
    assert int(page.inner_text("#step")) > 0
    assert page.locator("#legend .entry.majority").count() == 1
    shot = tmp_path / "playground.png"
    page.screenshot(path=str(shot))
    from PIL import Image

    with Image.open(shot) as im:  # the whole viewport, and not blank: the label colours are in it
        assert im.size == (1060, 600)
        colours = {c for _, c in im.convert("RGB").getcolors(1060 * 600)}
    assert len(colours & {tuple(int(h[i:i + 2], 16) for i in (1, 3, 5)) for h in PALETTES[DEFAULT_PALETTE]}) >= 1
    if os.environ.get("LOCALRULES_DEMO_SCREENSHOT"):
        dest = Path(os.environ["LOCALRULES_DEMO_SCREENSHOT"])
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, dest)
    other = next(name for name in PALETTES if name != DEFAULT_PALETTE)
    page.select_option("#palette", other)
    assert wait_label_cells(page, 30, other) > 0


def test_mouse_stroke_draws_and_erases(page):
    page.click("#clear")
    page.wait_for_function("localrulesDemo.lastFrame.alive === 0")
    assert label_cells(page) == 0
    box = page.locator("#grid").bounding_box()

    def stroke(y):
        page.mouse.move(box["x"] + 60, box["y"] + y)
        page.mouse.down()
        for k in range(1, 11):
            page.mouse.move(box["x"] + 60 + 32 * k, box["y"] + y, steps=2)
        page.mouse.up()

    stroke(200)  # a horizontal line across 20 cells
    n = wait_label_cells(page, 20)
    assert page.evaluate("localrulesDemo.lastFrame.alive") >= 20
    page.click("#mode-erase")
    stroke(200)
    page.wait_for_function("localrulesDemo.lastFrame.alive < 5")
    assert label_cells(page) < n


def test_malformed_messages_get_errors_and_the_page_keeps_running(page):
    page.evaluate("localrulesDemo.sendRaw('{this is not json')")
    page.wait_for_function("localrulesDemo.errors >= 1")
    assert "malformed JSON" in page.inner_text("#error")
    page.evaluate("localrulesDemo.sendRaw(JSON.stringify({type: 'load', digit: 1, pad: 'x'.repeat(70000)}))")
    page.wait_for_function("localrulesDemo.errors >= 2")
    assert "too large" in page.evaluate("localrulesDemo.lastError.error")
    page.click("#digits button[data-digit='7']")
    page.wait_for_function("localrulesDemo.lastFrame.loaded === 7")
    step = page.evaluate("localrulesDemo.lastFrame.step")
    page.wait_for_function(f"localrulesDemo.lastFrame.step > {step + 5}")  # still stepping
    assert page.evaluate("localrulesDemo.socket.readyState") == 1  # still the same open socket
    wait_label_cells(page, 20)


def test_two_tabs_two_grids(page, browser, sc_server):
    other = page.context.new_page()
    other.set_default_timeout(TIMEOUT_MS)
    other.goto(sc_server.url)
    other.wait_for_function("window.localrulesDemo && localrulesDemo.frames > 0")
    page.click("#digits button[data-digit='0']")
    wait_label_cells(page, 20)
    # the other tab's own frames keep coming after the load (no fixed wait): 3 more, all empty
    seen = other.evaluate("localrulesDemo.frames")
    other.wait_for_function(f"localrulesDemo.frames >= {seen + 3}")
    assert other.evaluate("localrulesDemo.lastFrame.alive") == 0 and label_cells(other) == 0


def test_restore_page_knocks_out_and_restores(browser, restore_server):
    ctx = browser.new_context(viewport={"width": 1100, "height": 620})
    try:
        p = ctx.new_page()
        p.set_default_timeout(TIMEOUT_MS)
        p.goto(restore_server.url)
        p.wait_for_function("window.localrulesDemo && localrulesDemo.hello && localrulesDemo.frames > 0")
        assert p.locator("#output").is_visible() and p.locator("#knockout").is_visible()
        assert not p.locator("#legend").is_visible()
        p.click("#digits button[data-digit='5']")
        p.wait_for_function("localrulesDemo.lastFrame.loaded === 5")
        p.click("#knockout")
        p.wait_for_function("localrulesDemo.lastFrame.step === 0 || localrulesDemo.lastFrame.running")
        assert p.locator("#speed").input_value() == "5"  # the restoration's slower default
        p.wait_for_function("!localrulesDemo.lastFrame.running && localrulesDemo.lastFrame.psnr_db !== null")
        assert "done" in p.inner_text("#stat-line") and p.inner_text("#step") == "10"
    finally:
        ctx.close()
