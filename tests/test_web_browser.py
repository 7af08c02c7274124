"""The drawing page in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

A real server runs on a loopback port; the tests draw digits with mouse (and touch) events,
upload, drop and paste files, use the keyboard, and check what the page shows. Screenshots go
to ``test-artifacts/``. Playwright's own browser download is never used: the page must work
offline with the distribution's chromium.
"""

from __future__ import annotations

import base64
import io
import itertools
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("DIGITLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
SETTLE_TIMEOUT_MS = 20_000
MOUSE_STEPS = 3  # intermediate pointer moves per stroke segment, like a real hand
UPSCALE = 4

Point = tuple[float, float]


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> list[Point]:
    """A closed loop starting at the top, in canvas fractions."""
    return [
        (cx + rx * math.sin(2 * math.pi * i / n), cy - ry * math.cos(2 * math.pi * i / n))
        for i in range(n + 1)
    ]


# Strokes as a person draws them, in fractions of the drawing area (x right, y down).
STROKES: dict[str, list[list[Point]]] = {
    "1": [[(0.52, 0.18), (0.5, 0.5), (0.48, 0.82)]],
    "7": [[(0.28, 0.22), (0.72, 0.22), (0.58, 0.5), (0.44, 0.82)]],
    "0": [ellipse(0.5, 0.5, 0.2, 0.32)],
    "4": [[(0.6, 0.18), (0.3, 0.6), (0.74, 0.6)], [(0.6, 0.35), (0.6, 0.84)]],
}


# ------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        msg = (
            f"{CHROMIUM} not found: install Debian's chromium "
            "(scripts/install-system-deps.sh) to run the browser tests"
        )
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page_factory(browser, server):
    """Open the page in a fresh context; records every request URL and page error."""
    contexts = []

    def open_page(viewport: dict = DESKTOP, **options):
        context = browser.new_context(viewport=viewport, reduced_motion="reduce", **options)
        contexts.append(context)
        page = context.new_page()
        page.requests = []
        page.errors = []
        page.on("request", lambda r: page.requests.append(r.url))
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.goto(server + "/")
        page.wait_for_function("() => document.getElementById('chart').children.length === 10")
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page(page_factory):
    p = page_factory()
    yield p
    assert not p.errors, p.errors


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def to_screen(page, point: Point) -> Point:
    box = page.locator("#pad").bounding_box()
    return box["x"] + point[0] * box["width"], box["y"] + point[1] * box["height"]


def draw(page, strokes: list[list[Point]], *, dx: float = 0.0, scale_x: float = 1.0) -> None:
    """Draw strokes with the mouse; x is mapped through ``dx + x * scale_x``."""
    for stroke in strokes:
        pts = [(dx + x * scale_x, y) for x, y in stroke]
        page.mouse.move(*to_screen(page, pts[0]))
        page.mouse.down()
        for p in pts[1:]:
            page.mouse.move(*to_screen(page, p), steps=MOUSE_STEPS)
        page.mouse.up()


def settle(page) -> None:
    """Wait until no prediction is pending or in flight."""
    page.wait_for_function(
        "() => document.getElementById('result').dataset.pending === 'false'",
        timeout=SETTLE_TIMEOUT_MS,
    )


def shown(page) -> tuple[str, str, str]:
    """(big digit text, result state, status line) as the page shows them."""
    return (
        page.inner_text("#digit").strip(),
        page.get_attribute("#result", "data-state"),
        page.inner_text("#status"),
    )


def png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt)
    return buf.getvalue()


def mnist_upload(mnist, index: int) -> bytes:
    """A real MNIST test digit as a photo-like upload: dark ink on white, 112x112."""
    big = np.kron(mnist.test_images[index], np.ones((UPSCALE, UPSCALE), np.uint8))
    return png(255 - big)


def dispatch_file(page, kind: str, name: str, data: bytes, mime: str = "image/png") -> None:
    """Fire a real drop or paste event carrying a file, as the browser does for a user."""
    page.evaluate(
        """([kind, name, b64, mime]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: mime }));
            if (kind === "drop") {
                const stage = document.getElementById("stage");
                for (const type of ["dragenter", "dragover", "drop"]) {
                    stage.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true,
                                                               cancelable: true }));
                }
            } else {
                document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt,
                                                                      bubbles: true }));
            }
        }""",
        [kind, name, base64.b64encode(data).decode(), mime],
    )


# ------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("digit", ["1", "7", "0", "4"])
def test_drawn_digit_is_recognised(page, server, artifacts_dir, digit):
    draw(page, STROKES[digit])
    settle(page)
    big, state, status = shown(page)
    assert big == digit, f"drew a {digit}, page shows {big!r} ({status})"
    assert state in {"ok", "unsure"}
    assert page.locator("#chart li.best .label").inner_text() == digit
    assert page.locator("#top3 li").first.inner_text().startswith(digit)
    assert page.get_attribute("#preview", "src").startswith("data:image/png;base64,")
    page.screenshot(path=artifacts_dir / f"web-desktop-drawn-{digit}.png", full_page=True)
    assert all(url.startswith(server) or url.startswith("data:") for url in page.requests), [
        u for u in page.requests if not u.startswith(server)
    ]


def test_prediction_updates_live_while_drawing(page):
    start, *rest = [to_screen(page, p) for p in STROKES["1"][0]]
    page.mouse.move(*start)
    page.mouse.down()
    for p in rest:
        page.mouse.move(*p, steps=MOUSE_STEPS)
    # the button is still held: only the debounced live prediction can fill the result
    page.wait_for_function(
        "() => document.getElementById('result').dataset.state !== 'idle'",
        timeout=SETTLE_TIMEOUT_MS,
    )
    page.mouse.up()
    settle(page)
    assert shown(page)[0] == "1"


def test_undo_clear_and_shortcuts(page):
    # Listen for the file chooser from the start: Playwright turns on Chromium's chooser
    # interception asynchronously when the first listener is added, and a key pressed right
    # after that can open the (headless, invisible) native dialog instead of raising the event.
    choosers = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    draw(page, STROKES["1"])
    settle(page)
    assert shown(page)[0] == "1"
    draw(page, [ellipse(0.5, 0.5, 0.2, 0.32)])  # a loop over the 1: no longer a 1
    settle(page)
    assert shown(page)[0] != "1"
    page.keyboard.press("Control+z")
    settle(page)
    assert shown(page)[0] == "1"
    page.keyboard.press("Escape")
    assert shown(page)[1] == "idle"
    assert page.locator("#clear").is_disabled()
    page.keyboard.press("Control+z")  # undo also brings back what Clear removed
    settle(page)
    assert shown(page)[0] == "1"
    page.click("#clear")
    assert shown(page)[1] == "idle"
    page.keyboard.press("u")
    deadline = time.monotonic() + 10
    while not choosers and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert len(choosers) == 1, "the u shortcut did not open the file chooser"


def test_upload_shows_image_and_digit(page, mnist, artifacts_dir):
    index = 0
    label = str(int(mnist.test_labels[index]))
    page.set_input_files(
        "#file",
        files=[
            {"name": "digit.png", "mimeType": "image/png", "buffer": mnist_upload(mnist, index)}
        ],
    )
    settle(page)
    assert shown(page)[0] == label
    view = page.locator("#upload-view")
    assert view.is_visible()
    page.wait_for_function("() => document.getElementById('upload-view').naturalWidth === 112")
    page.screenshot(path=artifacts_dir / "web-desktop-upload.png", full_page=True)
    # drawing on the stage replaces the upload with a fresh canvas
    draw(page, STROKES["7"])
    settle(page)
    assert not view.is_visible()
    assert shown(page)[0] == "7"


@pytest.mark.parametrize("kind", ["drop", "paste"])
def test_drop_and_paste_an_image(page, mnist, kind):
    index = 1
    dispatch_file(page, kind, f"{kind}.png", mnist_upload(mnist, index))
    settle(page)
    assert shown(page)[0] == str(int(mnist.test_labels[index]))
    assert page.locator("#upload-view").is_visible()


def test_no_digit_message(page, artifacts_dir):
    blank = np.full((120, 160), 250, np.uint8)
    page.set_input_files(
        "#file", files=[{"name": "blank.png", "mimeType": "image/png", "buffer": png(blank)}]
    )
    settle(page)
    big, state, status = shown(page)
    assert state == "empty" and big == "?"
    assert "no digit" in status.lower()
    page.screenshot(path=artifacts_dir / "web-desktop-no-digit.png", full_page=True)


def test_bad_files_give_readable_errors(page, artifacts_dir):
    truncated = png(np.full((64, 64), 255, np.uint8))[:40]
    page.set_input_files(
        "#file", files=[{"name": "broken.png", "mimeType": "image/png", "buffer": truncated}]
    )
    settle(page)
    _, state, status = shown(page)
    assert state == "error" and "broken.png" in status
    detail = page.inner_text("#confidence")
    assert "decode" in detail.lower() or "image" in detail.lower()
    page.screenshot(path=artifacts_dir / "web-desktop-error.png", full_page=True)
    page.set_input_files(
        "#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}]
    )
    _, state, status = shown(page)
    assert state == "error" and "notes.txt" in status and "not an image" in status


def test_heatmap_overlay_toggle(page, artifacts_dir):
    draw(page, STROKES["7"])
    settle(page)
    page.keyboard.press("h")
    settle(page)
    page.wait_for_function("() => !document.getElementById('heat').hidden")
    size = page.evaluate(
        "() => [document.getElementById('heat').width, document.getElementById('heat').height]"
    )
    assert size == page.evaluate(
        "() => [document.getElementById('pad').width, document.getElementById('pad').height]"
    )
    page.screenshot(path=artifacts_dir / "web-desktop-heatmap.png", full_page=True)
    page.keyboard.press("h")
    assert page.locator("#heat").is_hidden()


def test_number_mode(page, artifacts_dir):
    page.keyboard.press("n")
    assert page.is_checked("#mode-number")
    # three digits in thirds of the wide canvas
    for i, digit in enumerate("170"):
        draw(page, STROKES[digit], dx=i / 3 + 0.02, scale_x=0.3)
    settle(page)
    big, state, _ = shown(page)
    assert big == "170", f"page reads {big!r}"
    assert state in {"ok", "unsure"}
    assert page.locator("#boxes .box").count() == 3
    assert page.locator("#number-digits button").count() == 3
    page.locator("#number-digits button").nth(1).click()
    assert page.locator("#chart li.best .label").inner_text() == "7"
    page.screenshot(path=artifacts_dir / "web-desktop-number.png", full_page=True)


def touch_stroke(page, cdp, points: list[Point]) -> None:
    """One finger stroke through Chrome's touch input (real touch → pointer events)."""
    screen = [to_screen(page, p) for p in points]
    dense = []
    for (x0, y0), (x1, y1) in itertools.pairwise(screen):
        dense += [(x0 + (x1 - x0) * t / 8, y0 + (y1 - y0) * t / 8) for t in range(8)]
    dense.append(screen[-1])
    cdp.send(
        "Input.dispatchTouchEvent",
        {"type": "touchStart", "touchPoints": [{"x": dense[0][0], "y": dense[0][1]}]},
    )
    for x, y in dense[1:]:
        cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]}
        )
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def test_phone_touch_drawing_and_layout(page_factory, artifacts_dir):
    page = page_factory(PHONE, has_touch=True, is_mobile=True, device_scale_factor=2)
    cdp = page.context.new_cdp_session(page)
    for stroke in STROKES["7"]:
        touch_stroke(page, cdp, stroke)
    settle(page)
    assert shown(page)[0] == "7"
    overflow = page.evaluate("() => document.documentElement.scrollWidth")
    assert overflow <= PHONE["width"], "the page scrolls sideways on a phone"
    pad = page.locator("#pad").bounding_box()
    assert pad["width"] >= 0.8 * PHONE["width"] - 60, "drawing area too small on a phone"
    page.screenshot(path=artifacts_dir / "web-phone-drawn-7.png", full_page=True)
    # number mode on a phone: a 2:1 strip, two digits written with a finger
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    # In about 1 run in 6 Chromium's gesture detector turns this tap into no click at all
    # (touchstart and touchend reach the label, the click never comes; the header was laid out
    # differently in those runs). A person taps again; so does the test, once.
    for _ in range(2):
        page.tap("label[for=mode-number]")
        try:
            page.wait_for_function(
                "() => document.getElementById('mode-number').checked", timeout=2000
            )
            break
        except PlaywrightTimeoutError:
            continue
    assert page.evaluate("() => document.getElementById('mode-number').checked")
    pad = page.locator("#pad").bounding_box()
    assert pad["width"] / pad["height"] == pytest.approx(2.0, rel=0.05)
    for i, digit in enumerate("17"):
        for stroke in STROKES[digit]:
            touch_stroke(page, cdp, [(0.06 + i / 2 + 0.4 * x, y) for x, y in stroke])
    settle(page)
    assert shown(page)[0] == "17"
    page.screenshot(path=artifacts_dir / "web-phone-number.png", full_page=True)
    assert not page.errors, page.errors


def test_keyboard_accessible(page):
    draw(page, STROKES["1"])
    settle(page)
    assert "1" in page.inner_text("#announcer")  # results are announced to screen readers
    # every visible control has a name and can be reached with Tab
    names = page.evaluate(
        """() => [...document.querySelectorAll('button, input:not([type=file]), a')]
                 .filter((el) => !el.closest('[hidden]'))
                 .map((el) => (el.labels && el.labels[0] ? el.labels[0].innerText
                               : el.getAttribute('aria-label') || el.innerText).trim())"""
    )
    assert all(names), names
    page.focus("body")
    reached = set()
    for _ in range(25):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("() => document.activeElement.id"))
    assert {"undo", "clear", "upload", "brush", "heat-toggle", "mode-digit"} <= reached, reached
    # shortcuts work while a control has focus
    page.focus("#brush")
    page.keyboard.press("]")
    assert page.inner_text("#brush-value") == "24"
    page.keyboard.press("Delete")
    assert shown(page)[1] == "idle"


# ------------------------------------------------------------------------------------------
# issue 14: empty state, wording, uploads that cannot be shown, number mode's room and labels
# ------------------------------------------------------------------------------------------

EIGHT = [ellipse(0.5, 0.32, 0.14, 0.15), ellipse(0.5, 0.66, 0.17, 0.18)]


def test_empty_state_invites_drawing(page, artifacts_dir):
    """Nothing drawn: no black 28x28 square, no heavy dash; a line that asks for a drawing."""
    page.screenshot(path=artifacts_dir / "web-desktop-empty.png")
    big, state, status = shown(page)
    assert state == "idle" and big == "" and "draw" in status.lower()
    assert page.inner_text("#confidence").strip()  # says what will appear here
    frame = page.evaluate(
        "() => getComputedStyle(document.querySelector('.preview-frame')).backgroundColor"
    )
    assert frame not in {"rgb(0, 0, 0)", "#000"}, frame
    assert "—" not in page.inner_text("#top3") and "–" not in big


def test_an_eight(page):
    draw(page, EIGHT)
    settle(page)
    big, state, status = shown(page)
    assert big == "8" and state in {"ok", "unsure"}
    if state == "ok":
        assert status == "It's an 8"


def test_upload_that_cannot_be_shown_replaces_the_drawing(page, artifacts_dir):
    """A file that is no image (or one the browser cannot show) leaves blank paper with a note,
    not the old drawing under a "no preview" hint; Ctrl+Z brings the drawing back."""
    draw(page, STROKES["7"])
    settle(page)
    ink = (
        "() => { const c = document.getElementById('pad'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
        " for (let i = 0; i < d.length; i += 4) if (d[i] < 128) n++; return n; }"
    )
    assert page.evaluate(ink) > 0
    for name, mime, data in (
        ("notes.pdf", "application/pdf", b"%PDF-1.4 not an image"),
        ("photo.png", "image/png", b"\x89PNG\r\n\x1a\nbroken"),
    ):
        page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": data}])
        settle(page)
        page.wait_for_function(
            "() => document.getElementById('stage').classList.contains('unviewable')"
        )
        assert shown(page)[1] == "error"
        assert page.evaluate(ink) == 0, f"{name}: the old drawing is still on the stage"
        assert not page.locator("#pad").is_visible()
        assert name in page.inner_text("#stage-hint")
        page.screenshot(path=artifacts_dir / f"web-desktop-unviewable-{Path(name).stem}.png")
    page.keyboard.press("Control+z")  # leave the note
    page.keyboard.press("Control+z")  # the drawing comes back
    settle(page)
    assert shown(page)[0] == "7" and page.evaluate(ink) > 0


def _rects_overlap(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def test_number_mode_uses_the_room_labels_stay_off_the_digits_and_strokes_are_sent(
    page, artifacts_dir
):
    import json

    bodies = []
    page.on(
        "request",
        lambda r: (
            bodies.append(r.post_data)
            if r.url.endswith("/api/number") and r.method == "POST"
            else None
        ),
    )
    page.keyboard.press("n")
    pad = page.locator("#pad").bounding_box()
    assert pad["width"] >= 0.75 * DESKTOP["width"], f"number strip only {pad['width']:.0f} px wide"
    for i, digit in enumerate("170"):
        draw(page, STROKES[digit], dx=i / 3 + 0.02, scale_x=0.3)
    settle(page)
    assert shown(page)[0] == "170"
    page.screenshot(path=artifacts_dir / "web-desktop-number-room.png")
    verdict = page.locator(".verdict").bounding_box()
    assert verdict["y"] + verdict["height"] <= DESKTOP["height"], "the answer is below the fold"
    for k in range(3):
        box = page.locator("#boxes .box").nth(k)
        label = box.locator(".box-label").bounding_box()
        assert not _rects_overlap(label, box.bounding_box()), f"label {k} covers its digit"

    # The drawing's strokes go with the image: drawing order, canvas pixels, ms from the start.
    # (The last request that carries them: a server that does not take strokes yet gets the
    # image again alone.)
    body = [b for b in map(json.loads, bodies) if "strokes" in b][-1]
    assert body["image"].startswith("data:image/png;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(body["image"].split(",", 1)[1])))
    strokes = body["strokes"]
    assert len(strokes) == sum(len(STROKES[d]) for d in "170")
    first = STROKES["1"][0][0]
    x0, y0, t0 = strokes[0][0]
    assert t0 == 0
    assert x0 == pytest.approx((0.02 + 0.3 * first[0]) * sent.width, abs=3)
    assert y0 == pytest.approx(first[1] * sent.height, abs=3)
    times = [p[2] for s in strokes for p in s]
    assert times == sorted(times) and times[-1] > 0
    last = STROKES["0"][0][-1]
    assert strokes[-1][-1][0] == pytest.approx((2 / 3 + 0.02 + 0.3 * last[0]) * sent.width, abs=3)


def test_phone_shows_the_whole_model_line_and_the_number(page_factory, artifacts_dir):
    page = page_factory(PHONE, has_touch=True, is_mobile=True, device_scale_factor=2)
    page.wait_for_function(
        "() => document.getElementById('model-info').textContent.includes('param')"
    )
    cut = page.evaluate(
        "() => { const el = document.getElementById('model-info');"
        " return el.scrollWidth > el.clientWidth + 1; }"
    )
    assert not cut, "the model line is cut off on a phone"
    cdp = page.context.new_cdp_session(page)
    page.evaluate("() => document.getElementById('mode-number').click()")
    for i, digit in enumerate("17"):
        for stroke in STROKES[digit]:
            touch_stroke(page, cdp, [(0.06 + i / 2 + 0.4 * x, y) for x, y in stroke])
    settle(page)
    assert shown(page)[0] == "17"
    page.screenshot(path=artifacts_dir / "web-phone-number-fold.png")
    verdict = page.locator(".verdict").bounding_box()
    assert verdict["y"] + verdict["height"] <= PHONE["height"], "the number is below the fold"
    assert not page.errors, page.errors
