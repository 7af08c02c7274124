"""The "Teach it" panel of the drawing page in real Chromium, on the real server with the
feedback routes wired in (digitlab.apps.feedback.wire): Right, Wrong via the keys 0-9, Undo,
the counter, and a corrected number in number mode -- checked in the store itself.
"""

from __future__ import annotations

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("playwright")

from test_web_browser import (
    CHROMIUM_ARGS,
    DESKTOP,
    STROKES,
    draw,
    settle,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def feedback_server(recognizer, tmp_path_factory):
    from digitlab.apps.feedback.options import FeedbackSettings
    from digitlab.apps.server import ServerSettings, create_app
    from server_harness import BackgroundServer

    db = tmp_path_factory.mktemp("fb") / "feedback.sqlite3"
    app = create_app(
        ServerSettings(access_log=False),
        recognizer=recognizer,
        feedback=FeedbackSettings(db=str(db)),
    )
    with BackgroundServer(app) as url:
        yield url, app.state.feedback


@pytest.fixture
def fb_page(chromium_path, feedback_server):
    from playwright.sync_api import sync_playwright

    url, _ = feedback_server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=DESKTOP)
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.goto(url + "/")
        page.wait_for_selector("#feedback", state="visible")
        yield page
        assert not page.errors, page.errors
        browser.close()


@pytest.fixture
def chromium_path():
    from test_web_browser import CHROMIUM

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium")
    return CHROMIUM


def count_shown(page) -> int:
    return int(page.inner_text("#fb-count"))


def test_right_wrong_by_key_and_undo(fb_page, feedback_server, artifacts_dir):
    page = fb_page
    _, ctx = feedback_server
    ctx.store.delete_all()
    page.reload()
    page.wait_for_selector("#feedback", state="visible")
    assert count_shown(page) == 0
    assert page.is_disabled("#fb-right")  # nothing to judge yet

    draw(page, STROKES["7"])
    settle(page)
    page.wait_for_function("() => !document.getElementById('fb-right').disabled")
    page.click("#fb-right")
    page.wait_for_function("() => document.getElementById('fb-count').textContent === '1'")
    row = ctx.store.list(images=True)[-1]
    assert (row.label, row.predicted, row.source) == ("7", "7", "web")
    assert row.image.startswith(b"\x89PNG")  # the drawing as sent

    page.click("#clear")
    draw(page, STROKES["1"])
    settle(page)
    page.wait_for_function("() => !document.getElementById('fb-right').disabled")
    page.focus("#result")
    page.keyboard.press("4")  # "Wrong -- it's a 4", from the keyboard
    page.wait_for_function("() => document.getElementById('fb-count').textContent === '2'")
    row = ctx.store.list()[-1]
    assert (row.label, row.predicted) == ("4", "1")
    assert "kept as 4" in page.inner_text("#fb-status")
    assert page.inner_text("#fb-improve") == "Improve from 2 corrections"
    page.screenshot(path=str(artifacts_dir / "feedback_panel.png"))

    page.click("#fb-undo")
    page.wait_for_function("() => document.getElementById('fb-count').textContent === '1'")
    assert [r.label for r in ctx.store.list()] == ["7"]
    assert "Undone" in page.inner_text("#fb-status")


def test_number_mode_corrects_the_whole_string(fb_page, feedback_server):
    page = fb_page
    _, ctx = feedback_server
    before = ctx.store.count()
    page.keyboard.press("n")
    page.wait_for_function("() => document.getElementById('pad').width > 500")
    draw(page, STROKES["1"], dx=0.05, scale_x=0.35)
    draw(page, STROKES["7"], dx=0.45, scale_x=0.35)
    settle(page)
    page.wait_for_function("() => !document.getElementById('fb-number').disabled")
    assert page.is_hidden("#fb-digit-row") and page.is_visible("#fb-number-row")
    page.fill("#fb-number", "17")
    page.click("#fb-save-number")
    page.wait_for_function(
        f"() => document.getElementById('fb-count').textContent === '{before + 1}'"
    )
    row = ctx.store.list(images=True)[-1]
    assert row.label == "17" and row.source == "web"
