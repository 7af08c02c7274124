"""The desktop app under a real X server (Xvfb), driven by real X input events (xdotool).

Each test opens the real Tk window in this process and pumps its event loop while ``xdotool``
moves the X pointer and presses keys, so the events go through the X server exactly as a user's
would. Without Xvfb, xdotool or tkinter the tests are skipped with the reason — except under CI
(``CI`` set), where that is a failure.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitlab.core.errors import DigitlabError

pytestmark = pytest.mark.gui

SCREEN = "1280x800x24"
XVFB_START_TIMEOUT_S = 10
IDLE_TIMEOUT_S = 30
TRAIN_TIMEOUT_S = 120
# Seconds between two pointer moves: long enough for Tk to see each motion event on its own
# (Tk merges queued motion events), short enough that a stroke takes well under a second.
MOVE_PAUSE_S = 0.012
STEP_UNITS = 14  # paper units between two pointer positions along a stroke
PROB_TOLERANCE = 1e-5
CONFIDENT = 0.9
IMAGE_SUFFIXES = ("png", "jpg", "jpeg", "bmp", "gif", "webp")  # what "Open image…" offers

Stroke = list[tuple[float, float]]


def _shifted(strokes: list[Stroke], dx: float) -> list[Stroke]:
    return [[(x + dx, y) for x, y in stroke] for stroke in strokes]


# Digits as pen strokes on the 280 x 280 paper of single-digit mode (see digitlab.apps.gui.canvas).
SEVEN: list[Stroke] = [[(70, 55), (210, 55), (130, 240)]]
ONE: list[Stroke] = [[(145, 45), (135, 240)]]
ZERO: list[Stroke] = [
    [
        (140 + 62 * math.sin(t / 20 * 2 * math.pi), 140 - 92 * math.cos(t / 20 * 2 * math.pi))
        for t in range(21)
    ]
]
SEVEN_TWO_STROKES: list[Stroke] = [[(70, 55), (210, 55)], [(210, 55), (130, 240)]]
ONE_SEVEN: list[Stroke] = [[(30, 50), (25, 235)], [(120, 55), (250, 55), (175, 240)]]
# The same number in the middle of the wide paper of multi-digit mode (560 x 280).
ONE_SEVEN_WIDE: list[Stroke] = _shifted(ONE_SEVEN, 140)


def _missing(what: str) -> None:
    message = f"GUI tests need {what}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so this is an error, not a skip)")
    pytest.skip(message)


# ------------------------------------------------------------------------------------------------
# Fixtures: an X server, the engine, the app
# ------------------------------------------------------------------------------------------------


def xvfb_display() -> Iterator[str]:
    """A private Xvfb server; DISPLAY points at it while the generator is open.

    The ``x_display`` fixture (``conftest.py``) holds one for the whole session: every module
    of desktop-app tests shares it, so no Tk interpreter a test leaves behind can outlive the
    X server it is connected to (Tk ends the process when its display disappears)."""
    try:
        import tkinter  # noqa: F401
    except ImportError as exc:
        _missing(f"tkinter ({exc}; install python3-tk)")
    for tool, package in (("Xvfb", "xvfb"), ("xdotool", "xdotool")):
        if shutil.which(tool) is None:
            _missing(f"{tool} (Debian package {package})")
    read_fd, write_fd = os.pipe()
    # -displayfd: Xvfb picks a free display number itself and writes it to the pipe when ready.
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", SCREEN, "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    os.close(write_fd)
    number = _read_display_number(read_fd, proc)
    old = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = f":{number}"
    try:
        yield f":{number}"
    finally:
        gc.collect()  # free the last windows while their X server still runs
        if old is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = old
        proc.terminate()
        proc.wait(timeout=10)


def _read_display_number(read_fd: int, proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + XVFB_START_TIMEOUT_S
    text = b""
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        os.set_blocking(read_fd, False)
        while not text.endswith(b"\n"):
            if proc.poll() is not None:
                pytest.fail(f"Xvfb exited: {proc.stderr.read().decode(errors='replace')[-500:]}")
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("Xvfb did not report a display within 10 s")
            with contextlib.suppress(BlockingIOError):
                text += pipe.read() or b""
            time.sleep(0.02)
    return text.decode().strip()


@pytest.fixture
def make_app(x_display: str):
    """Factory: ``make_app(cwd)`` opens the app's main window working in folder ``cwd``."""
    from digitlab.apps.gui import create_app

    # Tk objects must be freed on the Tk thread: collect earlier tests' windows here, not
    # whenever some worker thread happens to trigger a garbage collection.
    gc.collect()
    opened = []

    def factory(cwd: Path):
        application = create_app(cwd=cwd)
        opened.append(application)
        wait_idle(application)
        return application

    yield factory
    for application in opened:
        application.close()  # idempotent; the next test's gc.collect() frees it


@pytest.fixture
def app(make_app, tmp_path: Path):
    """The app's main window, with the bundled model loaded, working in an empty folder."""
    application = make_app(tmp_path)
    assert application.recognizer is not None, application.error_var.get()
    return application


# ------------------------------------------------------------------------------------------------
# Helpers: pumping Tk, real pointer and keyboard input, screenshots
# ------------------------------------------------------------------------------------------------


def pump(app, seconds: float = 0.0) -> None:
    """Run the app's event loop for ``seconds`` (at least one pass)."""
    end = time.monotonic() + seconds
    while True:
        app.root.update()
        if time.monotonic() >= end:
            return
        time.sleep(0.003)


def wait_idle(app, timeout: float = IDLE_TIMEOUT_S) -> None:
    """Pump until no model load / prediction is pending."""
    deadline = time.monotonic() + timeout
    pump(app, 0.05)
    while app.is_busy:
        assert time.monotonic() < deadline, f"app still busy after {timeout} s"
        pump(app, 0.02)
    pump(app, 0.02)


def run_xdotool(app, args: list[str]) -> None:
    """Run one xdotool command line while the Tk loop keeps handling the events it makes."""
    proc = subprocess.Popen(["xdotool", *args], stderr=subprocess.PIPE)
    while proc.poll() is None:
        pump(app, 0.002)
    assert proc.returncode == 0, proc.stderr.read().decode()
    pump(app, 0.05)


def _densify(stroke: Stroke) -> Stroke:
    out = [stroke[0]]
    for (x0, y0), (x1, y1) in itertools.pairwise(stroke):
        n = max(1, math.ceil(math.dist((x0, y0), (x1, y1)) / STEP_UNITS))
        out += [(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n) for i in range(1, n + 1)]
    return out


def _screen_points(app, stroke: Stroke) -> list[tuple[int, int]]:
    pad = app.pad
    left, top = pad.winfo_rootx(), pad.winfo_rooty()
    return [
        (left + round(sx), top + round(sy))
        for sx, sy in (pad.paper_to_screen(x, y) for x, y in _densify(stroke))
    ]


def draw(app, strokes: list[Stroke], *, release: bool = True) -> None:
    """Draw ``strokes`` (paper units) with the real X pointer: press, move, release."""
    for stroke in strokes:
        points = _screen_points(app, stroke)
        args = ["mousemove", str(points[0][0]), str(points[0][1]), "mousedown", "1"]
        for x, y in points[1:]:
            args += ["sleep", str(MOVE_PAUSE_S), "mousemove", str(x), str(y)]
        if release:
            args += ["sleep", str(MOVE_PAUSE_S), "mouseup", "1"]
        run_xdotool(app, args)


def press_keys(app, *keys: str) -> None:
    """Type key combinations (xdotool names, e.g. ``ctrl+z``) into the focused main window."""
    app.root.focus_force()
    pump(app, 0.05)
    run_xdotool(app, ["key", "--delay", "30", *keys])


def screenshot(window, path: Path, display: str) -> Path:
    """Save what the X server shows of ``window`` (a Tk toplevel, menu bar included)."""
    from PIL import ImageGrab

    window.update()
    screen = ImageGrab.grab(xdisplay=display)
    # wm_geometry is the outer window (menu bar included); rootx/rooty the area below the menu.
    outer_top = int(window.wm_geometry().rsplit("+", 1)[1])
    left, top = window.winfo_rootx(), window.winfo_rooty()
    box = (left, min(top, outer_top), left + window.winfo_width(), top + window.winfo_height())
    screen.crop(box).save(path)
    return path


def assert_same_prediction(gui_pred, engine_pred) -> None:
    """The GUI's answer is the engine's answer for the same image."""
    assert gui_pred.digit == engine_pred.digit
    np.testing.assert_allclose(
        gui_pred.probabilities, engine_pred.probabilities, atol=PROB_TOLERANCE
    )
    assert np.array_equal(gui_pred.preprocessed, engine_pred.preprocessed)


def mnist_digit_file(mnist, recognizer, label: int, path: Path, *, scale: int = 4) -> Path:
    """A real MNIST test digit of class ``label``, enlarged, as dark ink on light paper.

    It is the first test image of that class that the model reads confidently as it is (some
    MNIST digits are ambiguous even to people), so a wrong answer means the GUI path broke.
    """
    for index in np.flatnonzero(mnist.test_labels == label):
        raw = mnist.test_images[index]
        pred = recognizer.predict(raw)
        if pred.digit == label and pred.confidence > CONFIDENT:
            break
    img = Image.fromarray(255 - raw).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    img.save(path)
    return path


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strokes", "expected"), [(SEVEN, 7), (ONE, 1), (ZERO, 0)], ids=["seven", "one", "zero"]
)
def test_drawing_with_the_mouse_predicts_the_digit(
    app, recognizer, x_display, artifacts_dir, strokes, expected
):
    draw(app, strokes)
    wait_idle(app)
    pad = app.pad
    assert len(pad.strokes) == len(strokes)
    # Tk saw the individual motion events, not just press and release.
    assert len(pad.strokes[0].points) >= len(_densify(strokes[0])) // 2
    assert app.results.digit_var.get() == str(expected), app.results.confidence_var.get()
    # Same engine as the CLI and web app: identical answer for the image the pad made.
    assert_same_prediction(app.last_result, recognizer.predict(app.last_image))
    assert app.last_image.tobytes() == pad.image().tobytes()
    assert app.results.chart.probabilities == app.last_result.probabilities
    assert "%" in app.results.confidence_var.get() and app.results.top_var.get().startswith(
        str(expected)
    )
    screenshot(app.root, artifacts_dir / f"gui_draw_{expected}.png", x_display)


def test_prediction_is_live_while_the_pen_is_down(app):
    draw(app, ONE, release=False)  # button still held
    pump(app, 0.4)  # > the 150 ms live-prediction interval
    wait_idle(app)
    assert app.last_result is not None and app.pad.strokes == []  # stroke not finished yet
    assert app.results.digit_var.get() == "1"
    run_xdotool(app, ["mouseup", "1"])
    wait_idle(app)
    assert len(app.pad.strokes) == 1 and app.results.digit_var.get() == "1"


def test_undo_clear_and_redo_with_keyboard_shortcuts(app, recognizer):
    draw(app, SEVEN_TWO_STROKES)
    wait_idle(app)
    assert app.results.digit_var.get() == "7"
    press_keys(app, "ctrl+z")
    wait_idle(app)
    assert len(app.pad.strokes) == 1
    assert_same_prediction(app.last_result, recognizer.predict(app.pad.image()))
    press_keys(app, "Delete")
    wait_idle(app)
    assert app.pad.is_empty and app.last_result is None and app.results.digit_var.get() == "–"
    press_keys(app, "ctrl+z")  # undo the clear
    wait_idle(app)
    assert len(app.pad.strokes) == 1 and app.last_result is not None
    press_keys(app, "Escape")
    wait_idle(app)
    assert app.pad.is_empty


def test_open_image_shows_thumbnail_and_engine_prediction(
    app, recognizer, mnist, tmp_path, x_display, artifacts_dir
):
    draw(app, ONE)  # something on the pad first: opening an image replaces it (undoably)
    wait_idle(app)
    for suffix in IMAGE_SUFFIXES:
        path = mnist_digit_file(mnist, recognizer, 3, tmp_path / f"three.{suffix}")
        app.open_image(path)  # what "Open image…" calls after its file dialog
        wait_idle(app)
        assert app.error_var.get() == "", suffix
        assert app.opened_path == path and app.results.thumb_caption.get() == path.name
        assert str(app.results.thumb_label.cget("image"))  # a thumbnail is shown
        assert app.pad.is_empty
        hints = [app.pad.itemcget(i, "text") for i in app.pad.find_withtag("hint")]
        assert any(path.name in hint for hint in hints), hints  # the paper says what it reads
        engine = recognizer.predict(path)
        assert_same_prediction(app.last_result, engine)
        assert app.results.digit_var.get() == str(engine.digit) == "3", suffix
        if suffix == "png":
            screenshot(app.root, artifacts_dir / "gui_open_image.png", x_display)
    press_keys(app, "ctrl+z")  # the drawing that the first image replaced comes back
    wait_idle(app)
    assert len(app.pad.strokes) == 1 and app.opened_path is None
    assert app.results.digit_var.get() == "1"


def test_unreadable_image_is_reported_in_the_window(app, tmp_path):
    bad = tmp_path / "not-an-image.png"
    bad.write_text("this is text, not a PNG")
    app.open_image(bad)
    wait_idle(app)
    assert "not-an-image.png" in app.error_var.get()
    assert app.error_label.winfo_ismapped()
    app.error_dismiss.invoke()
    pump(app, 0.05)
    assert app.error_var.get() == "" and not app.error_label.winfo_ismapped()
    # The app keeps working.
    draw(app, SEVEN)
    wait_idle(app)
    assert app.results.digit_var.get() == "7"


@pytest.mark.parametrize("name", ["corrupt.pt", "corrupt.onnx"])
def test_bad_model_file_is_reported_and_the_current_model_kept(
    app, recognizer, tmp_path, x_display, artifacts_dir, name
):
    before = app.model_var.get()
    current = app.recognizer
    bad = tmp_path / name
    bad.write_bytes(b"\x00garbage, not a model" * 50)
    app.load_model_file(bad)  # what "Load model…" calls after its file dialog
    wait_idle(app)
    assert name in app.error_var.get()
    assert app.recognizer is current and app.model_var.get() == before
    draw(app, SEVEN)
    wait_idle(app)
    assert app.results.digit_var.get() == "7"
    assert_same_prediction(app.last_result, recognizer.predict(app.last_image))
    screenshot(app.root, artifacts_dir / f"gui_bad_model_{bad.suffix[1:]}.png", x_display)


def test_load_model_switches_to_an_onnx_export(app, tmp_path):
    pytest.importorskip("onnxruntime")
    from digitlab.api import load_model
    from digitlab.training.export import export_onnx

    path = tmp_path / "bundled.onnx"
    export_onnx(None, path, verify=False, speed=False, exporter="torchscript")
    app.load_model_file(path)  # what "Load model…" calls after its file dialog
    wait_idle(app)
    assert app.error_var.get() == ""
    assert app.recognizer.info.backend == "onnx"
    assert str(path) in app.model_var.get() and "onnx" in app.model_var.get()
    draw(app, SEVEN)
    wait_idle(app)
    assert app.results.digit_var.get() == "7"
    assert_same_prediction(app.last_result, load_model(path).predict(app.last_image))


def test_ctrl_o_and_ctrl_l_open_the_file_dialogs(app, recognizer, mnist, tmp_path, monkeypatch):
    from digitlab.core.resolve import BUNDLED_MODEL

    image = mnist_digit_file(mnist, recognizer, 5, tmp_path / "five.png")
    model = tmp_path / "copy-of-bundled.pt"
    shutil.copy(BUNDLED_MODEL, model)
    asked = []

    def fake_dialog(**options):  # stands in for the modal Tk file dialog
        asked.append(options["title"])
        return str(image if options["title"] == "Open image" else model)

    monkeypatch.setattr("digitlab.apps.gui.app.filedialog.askopenfilename", fake_dialog)
    press_keys(app, "ctrl+o")
    wait_idle(app)
    assert asked == ["Open image"] and app.opened_path == image
    assert app.results.digit_var.get() == "5"
    press_keys(app, "ctrl+l")
    wait_idle(app)
    assert asked == ["Open image", "Load model"]
    assert str(model) in app.model_var.get() and app.error_var.get() == ""


def test_pen_width_changes_the_stroke(app):
    widths = []
    for pen in (8, 40):
        app.pen_scale.set(pen)
        pump(app, 0.05)
        assert app.pen_text.get() == str(pen)
        draw(app, ONE)
        wait_idle(app)
        ink = np.asarray(app.pad.image()) > 0
        widths.append(ink.sum(axis=1).max())  # widest row of ink = stroke width
        press_keys(app, "Delete")
        wait_idle(app)
    assert widths[1] > 3 * widths[0]


def _fake_run(
    folder: Path, name: str, *, epochs: int, done: int, age: float, early_stopping=None
) -> Path:
    """A run directory as the trainer leaves it after ``done`` of ``epochs`` epochs: config.json,
    metrics.csv and best.pt (a copy of the bundled model), best.pt ``age`` seconds old."""
    from digitlab.core.resolve import BUNDLED_MODEL

    run = folder / "runs" / name
    run.mkdir(parents=True)
    config = {"model": "digitnet", "epochs": epochs, "early_stopping": early_stopping}
    (run / "config.json").write_text(json.dumps(config))
    rows = ["epoch,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,lr,seconds"]
    for epoch in range(1, done + 1):
        val = min(0.9 + 0.01 * epoch, 0.95)  # stops improving after epoch 5
        rows.append(f"{epoch},0.1,0.9,0.1,{val},0.1,{val},0.001,1.0")
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    best = run / "best.pt"
    shutil.copy(BUNDLED_MODEL, best)
    stamp = time.time() - age
    os.utime(best, (stamp, stamp))
    return best


def test_starts_with_the_bundled_model_even_after_a_cancelled_run(make_app, tmp_path):
    """Issue #14.2: a run in ./runs (finished or not) never replaces the bundled model."""
    _fake_run(tmp_path, "20240101-000000-done", epochs=3, done=3, age=200)
    _fake_run(tmp_path, "20240102-000000-cancelled", epochs=5, done=1, age=100)
    app = make_app(tmp_path)
    assert "bundled model" in app.model_var.get(), app.model_var.get()
    assert "runs" not in app.model_var.get() and app.error_var.get() == ""


def test_newest_run_is_the_newest_finished_one(tmp_path):
    from digitlab.apps.gui import newest_finished_run, startup_model

    assert newest_finished_run(tmp_path) is None
    with pytest.raises(DigitlabError, match="no finished training run"):
        startup_model("newest", tmp_path)
    done = _fake_run(tmp_path, "20240101-000000-done", epochs=3, done=3, age=300)
    _fake_run(tmp_path, "20240102-000000-cancelled", epochs=5, done=1, age=200)
    stopped = _fake_run(tmp_path, "20240103-000000-early", epochs=20, done=9, age=400,
                        early_stopping=3)  # fmt: skip
    patient = _fake_run(
        tmp_path, "20240104-000000-x", epochs=20, done=9, age=100, early_stopping=5
    )  # fmt: skip  (4 epochs since the best: not stopped)
    (tmp_path / "runs" / "20240105-000000-empty").mkdir()  # crashed before its first epoch
    assert newest_finished_run(tmp_path) == done
    assert startup_model("newest", tmp_path) == (done, "newest run: 20240101-000000-done/best.pt")
    assert startup_model(None, tmp_path)[0] is None  # the bundled model, unless asked
    os.utime(stopped)  # now the early-stopped run is the newest finished one
    assert newest_finished_run(tmp_path) == stopped
    assert patient.is_file()


def test_load_newest_run_from_the_menu(make_app, tmp_path):
    app = make_app(tmp_path)
    app.load_newest_run()
    wait_idle(app)
    assert "No finished training run" in app.error_var.get()
    assert "bundled model" in app.model_var.get()
    app.clear_error()
    _fake_run(tmp_path, "20240101-000000-done", epochs=2, done=2, age=100)
    app.load_newest_run()
    wait_idle(app)
    assert app.error_var.get() == ""
    assert "newest run: 20240101-000000-done/best.pt" in app.model_var.get()


def test_corrupt_model_given_to_the_app_is_reported_not_replaced(make_app, tmp_path):
    from digitlab.apps.gui import create_app

    best = tmp_path / "broken.pt"
    best.write_bytes(b"not a checkpoint")
    app = create_app(best, cwd=tmp_path)
    try:
        wait_idle(app)
        assert str(best) in app.error_var.get()
        assert "instead" not in app.error_var.get()  # no silent switch to the bundled model
        assert app.recognizer is None
    finally:
        app.close()


def test_app_sets_torch_inference_threads(make_app, tmp_path, monkeypatch):
    import torch

    from digitlab.apps.gui import app as app_module

    monkeypatch.setattr(app_module, "_threads_set", False)
    monkeypatch.setenv("DIGITLAB_TORCH_THREADS", "1")
    torch.set_num_threads(2)
    try:
        app = make_app(tmp_path)
        # torch keeps one process-wide setting, which each thread picks up when it first runs
        # torch: look from the worker that runs the model and from a new thread.
        seen = []
        app.tasks.submit(torch.get_num_threads, seen.append, pytest.fail)
        wait_idle(app)
        fresh = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        fresh.start()
        fresh.join()
        assert seen == [1, 1]
    finally:
        torch.set_num_threads(1)


def test_multi_digit_mode_reads_the_number(app, recognizer, x_display, artifacts_dir):
    draw(app, ONE_SEVEN)
    wait_idle(app)
    press_keys(app, "ctrl+m")
    wait_idle(app)
    assert app.multi_var.get()
    engine = recognizer.read_number(app.last_image)
    assert engine.number == "17"
    assert app.results.digit_var.get() == "17"
    assert app.last_result.number == engine.number
    for gui_box, box in zip(app.last_result.digits, engine.digits, strict=True):
        assert (gui_box.x, gui_box.y, gui_box.width, gui_box.height) == (
            box.x,
            box.y,
            box.width,
            box.height,
        )
        assert_same_prediction(gui_box.prediction, box.prediction)
    assert len(app.pad.find_withtag("box")) == 2 * len(engine.digits)  # outline + label each
    screenshot(app.root, artifacts_dir / "gui_multi_digit.png", x_display)


def test_multi_digit_mode_passes_the_strokes_to_the_engine(app, monkeypatch):
    """Issue #15: read_number gets the strokes when it takes them (a ``strokes`` keyword)."""
    rec = app.recognizer
    original = rec.read_number
    calls = []

    def read_number(image, *, top_k=3, strokes=None):  # what the engine will accept
        calls.append(strokes)
        return original(image, top_k=top_k)

    monkeypatch.setattr(rec, "read_number", read_number)
    press_keys(app, "ctrl+m")
    draw(app, ONE_SEVEN_WIDE)
    wait_idle(app)
    strokes = calls[-1]
    assert strokes is not None and len(strokes) == len(ONE_SEVEN_WIDE) == len(app.pad.strokes)
    for given, stroke in zip(strokes, app.pad.strokes, strict=True):
        assert [(x, y) for x, y, _ in given] == stroke.points  # image pixels = paper units
    times = [t for stroke in strokes for _, _, t in stroke]
    assert times[0] == 0 and times == sorted(times) and times[-1] > 0
    assert app.results.digit_var.get() == "17"


def test_multi_digit_mode_on_an_opened_image(app, recognizer, mnist, tmp_path):
    digits = [
        Image.open(mnist_digit_file(mnist, recognizer, label, tmp_path / f"{label}.png"))
        for label in (4, 2)
    ]
    gap = digits[0].width // 2
    sheet = Image.new("L", (2 * digits[0].width + 3 * gap, digits[0].height + 2 * gap), 255)
    sheet.paste(digits[0], (gap, gap))
    sheet.paste(digits[1], (2 * gap + digits[0].width, gap))
    path = tmp_path / "forty-two.png"
    sheet.save(path)
    app.set_multi(True)
    assert app.pad.wide and app.title_var.get() == "Write a number"
    app.open_image(path)
    wait_idle(app)
    engine = recognizer.read_number(path)
    assert engine.number == "42" and app.results.digit_var.get() == "42"
    assert [b.x for b in app.last_result.digits] == [b.x for b in engine.digits]
    assert app.pad.find_withtag("box") == ()  # the boxes go on the thumbnail, not the pad
    app.toggle_multi()  # back to one digit: the same image is predicted as a single digit
    wait_idle(app)
    assert not app.multi_var.get() and len(app.results.digit_var.get()) == 1
    assert_same_prediction(app.last_result, recognizer.predict(path))


def test_a_bug_in_a_callback_is_shown_and_the_app_keeps_working(app):
    app.root.after(0, lambda: 1 / 0)
    pump(app, 0.1)
    assert "ZeroDivisionError" in app.error_var.get()
    draw(app, ONE)
    wait_idle(app)
    assert app.results.digit_var.get() == "1"


def test_window_resizes_and_the_drawing_scales(app):
    draw(app, SEVEN)
    wait_idle(app)
    image_before = app.pad.image().tobytes()
    width_before = app.pad.winfo_width()
    ink_before = app.pad.bbox("ink")
    app.root.geometry("1400x900")  # from the initial 1040x700
    pump(app, 0.3)
    assert app.pad.winfo_width() > width_before + 200
    ink_after = app.pad.bbox("ink")
    assert (ink_after[2] - ink_after[0]) > (ink_before[2] - ink_before[0]) * 1.2
    assert app.pad.image().tobytes() == image_before  # the model's copy is resolution-free
    draw(app, ONE)  # still drawable at the new size
    wait_idle(app)
    assert len(app.pad.strokes) == 2
    app.root.geometry("300x200")  # far too small: the window stops at its minimum size
    pump(app, 0.3)
    results = app.results
    window_bottom = app.root.winfo_rooty() + app.root.winfo_height()
    assert results.winfo_rooty() + results.winfo_reqheight() <= window_bottom
    assert app.root.winfo_width() >= app.root.winfo_reqwidth()
    assert app.pad.winfo_width() > 0 and app.pad.winfo_height() > 0


def _train_until_done(app, dialog) -> None:
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while dialog.running or app.is_busy:
        assert time.monotonic() < deadline, "training did not finish in time"
        pump(app, 0.05)
    wait_idle(app)


def test_train_dialog_trains_in_background_and_switches_model(
    app, mnist_dir, tmp_path, x_display, artifacts_dir
):
    app.open_train_dialog()
    dialog = app.train_dialog
    dialog.model_var.set("mlp_small")
    dialog.epochs_var.set("2")
    dialog.samples_var.set("3000")
    dialog.data_var.set(str(mnist_dir))
    dialog.start_button.invoke()
    saw_progress = False
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while dialog.running:
        assert time.monotonic() < deadline
        pump(app, 0.02)  # the window keeps handling events while training runs
        saw_progress = saw_progress or 0 < dialog.progress_var.get() < 1
    _train_until_done(app, dialog)
    assert saw_progress
    assert dialog.error is None, dialog.error
    result = dialog.result
    assert not result.interrupted and len(result.history) == 2
    assert result.run_dir.parent == tmp_path / "runs"
    for name in ("best.pt", "last.pt", "config.json", "metrics.csv"):
        assert (result.run_dir / name).is_file(), name
    assert dialog.progress_var.get() == pytest.approx(1.0)
    assert len(dialog.curve.series["validation"]) == 2
    assert len(dialog.curve.series["train (batches)"]) >= 2
    assert app.recognizer.info.name == "mlp_small"
    assert f"{result.run_dir.name}/best.pt" in app.model_var.get()
    screenshot(dialog, artifacts_dir / "gui_train_dialog.png", x_display)
    dialog.close()  # (without a window manager the dialog would sit on top of the pad)
    pump(app, 0.1)
    draw(app, SEVEN)  # the freshly trained model answers
    wait_idle(app)
    assert app.last_result.digit is not None


def test_train_cancel_keeps_the_current_model(app, mnist_dir):
    before = app.model_var.get()
    current = app.recognizer
    app.open_train_dialog()
    dialog = app.train_dialog
    dialog.model_var.set("mlp_small")
    dialog.epochs_var.set("5")
    dialog.data_var.set(str(mnist_dir))
    dialog.start_button.invoke()
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while dialog.progress_var.get() == 0:  # wait for the first step event
        assert dialog.running and time.monotonic() < deadline, dialog.error
        pump(app, 0.02)
    dialog.cancel_button.invoke()
    _train_until_done(app, dialog)
    assert dialog.result.interrupted
    assert (dialog.result.run_dir / "last.pt").is_file()
    assert app.recognizer is current and app.model_var.get() == before
    assert "cancelled" in dialog.message_var.get()


def test_train_without_mnist_says_so(app, tmp_path):
    empty = tmp_path / "no-mnist-here"
    empty.mkdir()
    app.open_train_dialog()
    dialog = app.train_dialog
    dialog.data_var.set(str(empty))
    dialog.download_var.set(False)
    dialog.start_button.invoke()
    _train_until_done(app, dialog)
    assert dialog.error is not None and "MNIST" in dialog.error.upper()
    assert str(empty) in dialog.error_var.get()
    assert "Training failed" in app.error_var.get()
    assert str(dialog.start_button.cget("state")) == "normal"  # can try again


def test_train_dialog_rejects_bad_fields(app):
    app.open_train_dialog()
    dialog = app.train_dialog
    dialog.epochs_var.set("zero")
    dialog.start_button.invoke()
    pump(app, 0.05)
    assert "Epochs" in dialog.error_var.get() and not dialog.running
    dialog.epochs_var.set("1")
    dialog.samples_var.set("-5")
    dialog.start_button.invoke()
    pump(app, 0.05)
    assert "Training images" in dialog.error_var.get() and not dialog.running


def test_closing_frees_every_tk_object_without_the_garbage_collector(x_display, tmp_path):
    """Tk objects must die on the Tk thread: closing leaves no cycles for a later collection
    (which could run on any thread, and finalising Tcl elsewhere aborts the process)."""
    from digitlab.apps.gui import create_app

    gc.collect()
    app = create_app(cwd=tmp_path)
    wait_idle(app)
    draw(app, SEVEN)
    app.open_image(drawn_one_png(tmp_path))
    app.open_train_dialog()
    wait_idle(app)
    root, dialog = weakref.ref(app.root), weakref.ref(app.train_dialog)
    gc.disable()
    try:
        app.close()
        del app
        assert root() is None and dialog() is None
    finally:
        gc.enable()


def drawn_one_png(folder: Path) -> Path:
    """A plain drawn "1" as a PNG file."""
    img = Image.new("L", (60, 90), 255)
    img.paste(0, (26, 10, 34, 80))
    path = folder / "one.png"
    img.save(path)
    return path


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for ``python -m digitlab`` in another folder: the digitlab under test."""
    import digitlab

    src = str(Path(digitlab.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def test_cli_opens_the_window(x_display, tmp_path):
    """`digitlab gui` as a user runs it: a window titled digitlab appears, Ctrl+Q closes it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "digitlab", "gui"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + IDLE_TIMEOUT_S
        window = ""
        while not window:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "no digitlab window appeared"
            found = subprocess.run(
                ["xdotool", "search", "--name", "^digitlab"], capture_output=True, text=True
            )
            window = found.stdout.split()[0] if found.stdout.split() else ""
            time.sleep(0.1)
        subprocess.run(["xdotool", "windowfocus", "--sync", window], check=True)
        subprocess.run(["xdotool", "key", "ctrl+q"], check=True)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("name", ["bad.pt", "bad.onnx"])
def test_cli_rejects_a_bad_model_file_before_opening_a_window(x_display, tmp_path, name):
    """Issue #14.3: exit status 2 and predict's one-line message, no window."""
    bad = tmp_path / name
    bad.write_bytes(b"\x00garbage, not a model" * 50)
    outputs = {}
    for command in ("gui", "predict"):
        args = [sys.executable, "-m", "digitlab", command, "--model", str(bad)]
        if command == "predict":
            args.append(str(drawn_one_png(tmp_path)))
        proc = subprocess.run(
            args, capture_output=True, text=True, cwd=tmp_path, env=cli_env(), timeout=60
        )
        assert proc.returncode == 2, proc.stderr
        outputs[command] = proc.stderr.strip()
    assert outputs["gui"] == outputs["predict"].replace("digitlab predict", "digitlab gui")
    assert len(outputs["gui"].splitlines()) == 1 and str(bad) in outputs["gui"]


def test_cli_newest_without_a_finished_run_exits_2(x_display, tmp_path):
    _fake_run(tmp_path, "20240102-000000-cancelled", epochs=5, done=1, age=100)
    proc = subprocess.run(
        [sys.executable, "-m", "digitlab", "gui", "--model", "newest"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=cli_env(),
        timeout=60,
    )
    assert proc.returncode == 2
    assert "no finished training run" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_rejects_a_missing_model_file(tmp_path):
    missing = tmp_path / "nope.pt"
    proc = subprocess.run(
        [sys.executable, "-m", "digitlab", "gui", "--model", str(missing)],
        capture_output=True,
        text=True,
        env=cli_env(DISPLAY=""),
    )
    assert proc.returncode == 2
    assert str(missing) in proc.stderr and "Traceback" not in proc.stderr


def _set_theme_and_draw(app, mode: str, multi: bool) -> None:
    app.set_theme(mode)
    if app.multi_var.get() != multi:
        app.toggle_multi()
    press_keys(app, "Escape")
    wait_idle(app)
    draw(app, ONE_SEVEN_WIDE if multi else SEVEN)
    wait_idle(app)


@pytest.mark.parametrize("mode", ["light", "dark"])
def test_looks_light_and_dark_in_both_modes(app, x_display, artifacts_dir, mode):
    """Issue #14.9: the theme, a square paper (wide for a number), no grey bands around it."""
    from digitlab.apps.gui.style import PALETTES

    pal = PALETTES[mode]
    for multi in (False, True):
        _set_theme_and_draw(app, mode, multi)
        pad = app.pad
        assert pad.cget("background") == pal.bg  # the pad blends into its card
        x0, y0, x1, y1 = pad.bbox("paper")
        ratio = (x1 - x0) / (y1 - y0)
        assert ratio == pytest.approx(2.0 if multi else 1.0, abs=0.03)
        assert app.results.digit_var.get() == ("17" if multi else "7")
        name = f"gui_{mode}_{'number' if multi else 'digit'}.png"
        screenshot(app.root, artifacts_dir / name, x_display)
    assert app.dark_var.get() == (mode == "dark")
    # Labels keep their styles' colours (the theme must not pin them as widget options).
    app.show_error("An error shown in the theme's colours")
    pump(app, 0.1)
    for label in (app.error_label, app.status_left):
        assert str(label.cget("foreground")) == "" and str(label.cget("background")) == ""
    screenshot(app.root, artifacts_dir / f"gui_{mode}_error.png", x_display)
    app.open_train_dialog()
    pump(app, 0.2)
    assert app.train_dialog.cget("background") == pal.bg
    screenshot(app.train_dialog, artifacts_dir / f"gui_{mode}_train_dialog.png", x_display)
    app.train_dialog.close()


def test_ctrl_d_switches_dark_mode(app):
    from digitlab.apps.gui.style import DARK, LIGHT

    app.set_theme("light")
    draw(app, SEVEN)
    wait_idle(app)
    press_keys(app, "ctrl+d")
    assert app.dark_var.get() and app.pad.cget("background") == DARK.bg
    assert app.results.verdict.itemcget("verdict", "fill") == DARK.ok_soft
    press_keys(app, "ctrl+d")
    assert not app.dark_var.get() and app.pad.cget("background") == LIGHT.bg
    assert app.results.verdict.itemcget("verdict", "fill") == LIGHT.ok_soft


def test_works_without_the_theme_package(make_app, tmp_path, monkeypatch, x_display, artifacts_dir):
    """Without sv-ttk the app falls back to a flat theme of its own, light and dark."""
    from digitlab.apps.gui import style

    monkeypatch.setattr(style, "_has_sun_valley", lambda: False)
    app = make_app(tmp_path)
    for mode in ("light", "dark"):
        app.set_theme(mode)
        assert ttk_theme(app) == style.FALLBACK_THEMES[mode]
        draw(app, SEVEN)
        wait_idle(app)
        assert app.results.digit_var.get() == "7"
        screenshot(app.root, artifacts_dir / f"gui_fallback_{mode}.png", x_display)
        press_keys(app, "Escape")
        wait_idle(app)


def ttk_theme(app) -> str:
    """The name of the ttk theme in use."""
    from tkinter import ttk

    return ttk.Style(app.root).theme_use()


def test_probabilities_are_formatted_like_the_web_page():
    """One rule, the web page's pct(): never "100.0%" or "0.0%" for what is not exactly that."""
    from digitlab.apps.gui.charts import format_probability

    assert format_probability(0.99996) == ">99.9%"
    assert format_probability(0.9994) == ">99.9%"  # would round to 100.0%
    assert format_probability(0.9989) == "99.9%"
    assert format_probability(0.00004) == "<0.1%"
    assert format_probability(1.0) == "100.0%" and format_probability(0.0) == "0.0%"
    assert format_probability(0.5) == "50.0%"
    assert format_probability(0.999996, 2) == ">99.99%"
    web = (Path(__file__).parents[1] / "src/digitlab/apps/web/app.js").read_text()
    assert "const limit = 10 ** -(digits + 2);" in web  # the rule mirrored here


def test_probability_axis_has_round_ticks(app):
    from digitlab.apps.gui.charts import CurveChart, probability_ticks

    assert probability_ticks(0.1) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert probability_ticks(0.0) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert probability_ticks(0.55) == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert probability_ticks(0.931) == [0.92, 0.94, 0.96, 0.98, 1.0]
    assert probability_ticks(0.985) == [0.98, 0.99, 1.0]
    chart = CurveChart(app.root, x_label="epoch", y_label="accuracy", width=400, height=200)
    chart.place(x=0, y=0)
    chart.reset(3)
    for epoch, acc in ((1, 0.1), (2, 0.6), (3, 0.9)):
        chart.add_point("validation", epoch, acc, markers=True)
    pump(app, 0.05)
    labels = [chart.itemcget(i, "text") for i in chart.find_withtag("ytick")]
    assert labels == ["0%", "25%", "50%", "75%", "100%"]
    chart.destroy()


def test_status_bar_texts_never_overlap(app):
    long_model = "Model: " + " · ".join(["a-very-long-model-description"] * 8)
    app.model_var.set(long_model)
    app.set_status("Recognised in 6 ms — " + "a long status message " * 4)
    for geometry in ("1040x700", "800x700"):
        app.root.geometry(geometry)
        pump(app, 0.3)
        left, right = app.status_left, app.status_right
        assert left.winfo_x() + left.winfo_reqwidth() <= right.winfo_x()
        assert right.winfo_x() + right.winfo_width() <= app.status_bar.winfo_width()
        assert left.cget("text").endswith("…") and right.cget("text").endswith("…")
    app.set_status("Ready")
    pump(app, 0.1)
    assert app.status_right.cget("text") == "Ready"


def test_confidence_near_certain_reads_over_99_9(app):
    draw(app, SEVEN)
    wait_idle(app)
    confidence = app.last_result.confidence
    shown = app.results.confidence_var.get()
    if confidence > 0.9999:
        assert shown.startswith(">99.9%") and "100" not in shown
    top = app.results.top_var.get().splitlines()[0]
    assert top.split()[1] == shown.split()[0]
