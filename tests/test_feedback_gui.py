"""The desktop app's "Teach it" panel under Xvfb with real X input (xdotool): Right, a wrong
digit from the keyboard, Undo, a corrected number, and the counter -- checked in the store.
"""

from __future__ import annotations

import pytest

pytest.importorskip("sqlalchemy")

import test_gui
from test_gui import (
    ONE,
    ONE_SEVEN,
    SEVEN,
    draw,
    press_keys,
    pump,
    run_xdotool,
    screenshot,
    wait_idle,
)

# test_gui's fixture, used here as it is (x_display comes from conftest.py)
make_app = test_gui.make_app

pytestmark = pytest.mark.gui


def click(app, widget) -> None:
    """A real left click in the middle of ``widget``."""
    app.root.update()
    x = widget.winfo_rootx() + widget.winfo_width() // 2
    y = widget.winfo_rooty() + widget.winfo_height() // 2
    run_xdotool(app, ["mousemove", str(x), str(y), "click", "1"])


def settle(app) -> None:
    wait_idle(app)
    pump(app, 0.1)
    wait_idle(app)


@pytest.fixture
def fb_app(make_app, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DIGITLAB_FEEDBACK_DB", raising=False)
    app = make_app(tmp_path)
    assert app.recognizer is not None, app.error_var.get()
    return app


def test_right_wrong_key_undo(fb_app, tmp_path, x_display, artifacts_dir):
    app = fb_app
    panel = app.feedback
    assert not (tmp_path / "home" / "feedback.sqlite3").exists()  # opening writes nothing
    assert panel.count_var.get() == "0 corrections stored"

    draw(app, SEVEN)
    settle(app)
    assert str(panel.right_button.cget("state")) == "normal"
    click(app, panel.right_button)
    settle(app)
    store = panel.store
    rows = store.list(images=True)
    assert [(r.label, r.predicted, r.source) for r in rows] == [("7", "7", "gui")]
    assert rows[0].tiles.shape == (1, 28, 28)
    assert panel.count_var.get() == "1 correction stored"

    press_keys(app, "Escape")
    draw(app, ONE)
    settle(app)
    press_keys(app, "4")  # Wrong -- it's a 4, from the keyboard
    settle(app)
    assert [(r.label, r.predicted) for r in store.list()][-1] == ("4", "1")
    assert panel.improve_button.cget("text") == "Improve from 2 corrections"
    screenshot(app.root, artifacts_dir / "gui_feedback.png", x_display)

    click(app, panel.undo_button)
    settle(app)
    assert [r.label for r in store.list()] == ["7"]
    assert "Undone" in panel.status_var.get()


def test_multi_digit_mode_corrects_the_number(fb_app):
    app = fb_app
    panel = app.feedback
    press_keys(app, "ctrl+m")
    draw(app, ONE_SEVEN)
    settle(app)
    assert panel.number_entry.winfo_ismapped()
    panel.number_entry.focus_force()
    pump(app, 0.05)
    run_xdotool(app, ["type", "--delay", "30", "71"])
    run_xdotool(app, ["key", "Return"])
    settle(app)
    rows = panel.store.list()
    assert [(r.label, r.source) for r in rows] == [("71", "gui")]
    assert panel.count_var.get() == "1 correction stored"


@pytest.mark.slow  # a real fine-tune with MNIST validation before and after: 1-3 min here
def test_improve_switches_the_window_to_the_personal_model(
    fb_app, tmp_path, mnist_dir, monkeypatch
):
    import time

    monkeypatch.setenv("DIGITLAB_DATA", str(mnist_dir))
    app = fb_app
    panel = app.feedback
    panel.finetune_overrides.update(steps=5, eval_test=False)
    draw(app, SEVEN)
    settle(app)
    click(app, panel.right_button)
    settle(app)
    assert panel.improve_button.cget("text") == "Improve from 1 correction"
    click(app, panel.improve_button)
    deadline = time.monotonic() + 300
    while panel.improver is None or panel.improver.running or panel._poll_after is not None:
        assert time.monotonic() < deadline, "improving did not finish"
        pump(app, 0.1)
    settle(app)
    assert panel.improver.status()["state"] == "done", panel.status_var.get()
    assert app.recognizer.info.source.endswith("personal.pt")
    assert "your personal model" in app.model_var.get()
    assert (tmp_path / "home" / "personal.pt").exists()
