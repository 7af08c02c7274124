"""The feedback API on a real uvicorn server on loopback, with the bundled model.

Covers both body forms, numbers, undo, the image error codes, forged Origin / Sec-Fetch-Site
and Host headers, the admin token on an exposed server, feedback off, concurrent clients and
the OpenAPI document.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("sqlalchemy")

from digitlab.apps.feedback.options import FeedbackSettings
from digitlab.apps.feedback.routes import FeedbackContext, router
from digitlab.apps.feedback.security import HostCheckMiddleware


def build_app(recognizer, settings: FeedbackSettings):
    """The feedback router wired the way the integration note says."""
    from fastapi import FastAPI

    app = FastAPI()
    app.add_middleware(HostCheckMiddleware, allowed_hosts=settings.allowed_hosts)
    app.include_router(router)
    holder = {"rec": recognizer}
    app.state.feedback = FeedbackContext.open(
        settings, lambda: holder["rec"], lambda r: holder.__setitem__("rec", r)
    )
    probe = np.zeros((28, 28), np.uint8)
    probe[4:24, 13:16] = 255  # a "1"

    @app.get("/probe")
    def which_model() -> dict:
        """What a prediction route does: take the current model once, run it."""
        rec = app.state.feedback.get_recognizer()
        return {"digit": rec.predict(probe).digit, "source": rec.info.source}

    return app


class Server:
    """uvicorn on 127.0.0.1:free-port in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="none")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def digit_png(image: np.ndarray, scale: int = 8) -> bytes:
    """An MNIST digit as a canvas-like PNG: dark ink on white, enlarged."""
    img = Image.fromarray(255 - image).resize((28 * scale, 28 * scale), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def number_png(images: list[np.ndarray]) -> bytes:
    """Digits side by side with gaps, dark on white."""
    canvas = np.zeros((40, 40 * len(images)), np.uint8)
    for k, im in enumerate(images):
        canvas[6:34, 40 * k + 6 : 40 * k + 34] = im
    img = Image.fromarray(255 - canvas).resize((canvas.shape[1] * 6, 240), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def settings(tmp_path) -> FeedbackSettings:
    return FeedbackSettings(db=str(tmp_path / "fb.sqlite3"))


@pytest.fixture
def served(recognizer, settings):
    app = build_app(recognizer, settings)
    with Server(app) as url:
        yield url, app.state.feedback
    app.state.feedback.close()


def test_post_multipart_then_stats_and_undo(served, mnist):
    url, ctx = served
    data = digit_png(mnist.test_images[0])
    r = httpx.post(f"{url}/api/feedback", files={"file": ("d.png", data)}, data={"label": "3"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["label"] == "3" and body["predicted"] == str(mnist.test_labels[0])
    assert body["model_id"].endswith("default.pt") and body["count"] == 1
    stored = ctx.store.get(body["id"])
    assert stored.image == data and stored.source == "api" and stored.tiles.shape == (1, 28, 28)
    assert stored.tiles.max() == 255  # the 28x28 the model saw, ink bright

    again = httpx.post(f"{url}/api/feedback", files={"file": ("d.png", data)}, data={"label": "3"})
    assert again.json()["duplicate"] and again.json()["id"] == body["id"]

    stats = httpx.get(f"{url}/api/feedback/stats").json()
    assert stats["count"] == 1 and stats["by_digit"]["3"] == 1 and stats["by_source"] == {"api": 1}
    assert stats["wrong"] == 1

    undo = httpx.delete(
        f"{url}/api/feedback/{body['id']}", headers={"X-Undo-Token": body["undo_token"]}
    )
    assert undo.status_code == 200 and undo.json() == {"deleted": 1, "count": 0}
    gone = httpx.delete(f"{url}/api/feedback/{body['id']}")
    assert gone.status_code == 404 and "no correction with id" in gone.json()["detail"]


def test_post_json_data_url_from_the_page(served, mnist):
    url, ctx = served
    data = digit_png(mnist.test_images[1])
    image = "data:image/png;base64," + base64.b64encode(data).decode()
    r = httpx.post(
        f"{url}/api/feedback",
        json={"image": image, "label": 2, "predicted": "7", "source": "web"},
        headers={"Origin": url, "Sec-Fetch-Site": "same-origin"},
    )
    assert r.status_code == 201, r.text
    row = ctx.store.get(r.json()["id"])
    assert (row.label, row.predicted, row.source) == ("2", "7", "web")


def test_number_correction_keeps_one_tile_per_digit(served, mnist):
    url, ctx = served
    data = number_png([mnist.test_images[2], mnist.test_images[3]])
    label = f"{mnist.test_labels[2]}{mnist.test_labels[3]}"
    r = httpx.post(f"{url}/api/feedback", files={"file": ("n.png", data)}, data={"label": label})
    assert r.status_code == 201, r.text
    row = ctx.store.get(r.json()["id"])
    assert row.label == label and row.tiles.shape == (2, 28, 28) and row.trainable


@pytest.mark.parametrize(
    ("payload", "status", "words"),
    [
        (b"this is not an image", 415, "not a recognised image"),
        (None, 422, "cannot be decoded"),  # a truncated PNG
        (b"", 422, "empty"),
    ],
)
def test_bad_images_get_the_predict_status_codes(served, mnist, payload, status, words):
    url, ctx = served
    if payload is None:
        payload = digit_png(mnist.test_images[0])[:300]
    r = httpx.post(f"{url}/api/feedback", files={"file": ("x.png", payload)}, data={"label": "1"})
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert ctx.store.count() == 0


def test_too_many_pixels_is_413(recognizer, tmp_path, mnist):
    settings = FeedbackSettings(db=str(tmp_path / "fb.sqlite3"), max_pixels=10_000)
    app = build_app(recognizer, settings)
    with Server(app) as url:
        data = digit_png(mnist.test_images[0], scale=8)  # 224x224 = 50,176 pixels
        r = httpx.post(f"{url}/api/feedback", files={"file": ("d.png", data)}, data={"label": "7"})
    assert r.status_code == 413 and "exceeds the limit of 10,000 pixels" in r.json()["detail"]


@pytest.mark.parametrize(
    ("form", "words"),
    [
        ({"label": "x"}, "label must be a digit"),
        ({}, "multipart field 'label' is missing"),
        ({"label": "1", "source": "gui"}, "source must be 'web' or 'api'"),
    ],
)
def test_bad_fields_are_422(served, mnist, form, words):
    url, _ = served
    data = digit_png(mnist.test_images[0])
    r = httpx.post(f"{url}/api/feedback", files={"file": ("d.png", data)}, data=form)
    assert r.status_code == 422 and words in r.json()["detail"]


def test_json_errors(served):
    url, _ = served
    r = httpx.post(f"{url}/api/feedback", json={"image": "data:text/plain;base64,aGk=", "label": 1})
    assert r.status_code == 415
    r = httpx.post(f"{url}/api/feedback", json={"label": 1})
    assert r.status_code == 422 and "image" in r.json()["detail"]
    r = httpx.post(
        f"{url}/api/feedback", content=b"label=1", headers={"content-type": "text/plain"}
    )
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"},
    ],
)
def test_cross_site_writes_are_refused(served, mnist, headers):
    url, ctx = served
    data = digit_png(mnist.test_images[0])
    r = httpx.post(
        f"{url}/api/feedback", files={"file": ("d.png", data)}, data={"label": "1"}, headers=headers
    )
    assert r.status_code == 403 and "cross-site request refused" in r.json()["detail"]
    ok = httpx.post(f"{url}/api/feedback", files={"file": ("d.png", data)}, data={"label": "1"})
    assert ok.status_code == 201
    r = httpx.delete(f"{url}/api/feedback/{ok.json()['id']}", headers=headers)
    assert r.status_code == 403
    assert ctx.store.count() == 1


def test_forged_host_is_refused(served):
    url, _ = served
    port = url.rsplit(":", 1)[1]
    for host in ("evil.example", f"attacker.example:{port}", "127.0.0.1.nip.io"):
        r = httpx.get(f"{url}/api/feedback/stats", headers={"Host": host})
        assert r.status_code == 400 and "is not served here" in r.json()["detail"]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert httpx.get(f"{url}/api/feedback/stats", headers={"Host": host}).status_code == 200


def test_exposed_server_needs_the_admin_token(recognizer, tmp_path, mnist):
    settings = FeedbackSettings(
        db=str(tmp_path / "fb.sqlite3"),
        exposed=True,
        admin_token="s3cret",
        allowed_hosts=("127.0.0.1", "digits.example"),
    )
    app = build_app(recognizer, settings)
    with Server(app) as url:
        data = digit_png(mnist.test_images[0])
        posted = httpx.post(
            f"{url}/api/feedback", files={"file": ("d.png", data)}, data={"label": "1"}
        ).json()
        other = httpx.post(
            f"{url}/api/feedback",
            files={"file": ("e.png", digit_png(mnist.test_images[1]))},
            data={"label": "2"},
        ).json()
        assert httpx.get(f"{url}/api/feedback").status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.get(f"{url}/api/feedback", headers=wrong).status_code == 403
        admin = {"Authorization": "Bearer s3cret"}
        listed = httpx.get(f"{url}/api/feedback", headers=admin)
        assert listed.status_code == 200 and listed.json()["count"] == 2
        assert httpx.get(f"{url}/api/feedback/stats").status_code == 200  # counts are public
        # deleting someone else's correction needs the token; the undo token works for one's own
        assert httpx.delete(f"{url}/api/feedback/{other['id']}").status_code == 401
        bad_undo = {"X-Undo-Token": posted["undo_token"]}
        assert (
            httpx.delete(f"{url}/api/feedback/{other['id']}", headers=bad_undo).status_code == 401
        )
        undo = httpx.delete(f"{url}/api/feedback/{posted['id']}", headers=bad_undo)
        assert undo.status_code == 200
        assert httpx.delete(f"{url}/api/feedback?all=true").status_code == 401
        assert (
            httpx.delete(f"{url}/api/feedback?all=true", headers={"X-Admin-Token": "x"}).status_code
            == 403
        )
        r = httpx.delete(f"{url}/api/feedback?all=true", headers={"X-Admin-Token": "s3cret"})
        assert r.json() == {"deleted": 1, "count": 0}
        r = httpx.get(f"{url}/api/feedback/stats", headers={"Host": "digits.example"})
        assert r.status_code == 200
    app.state.feedback.close()


def test_exposed_without_a_token_cannot_list(recognizer, tmp_path):
    settings = FeedbackSettings(db=str(tmp_path / "fb.sqlite3"), exposed=True)
    app = build_app(recognizer, settings)
    with Server(app) as url:
        r = httpx.get(f"{url}/api/feedback", headers={"Authorization": "Bearer anything"})
    assert r.status_code == 403 and "--admin-token" in r.json()["detail"]


def test_feedback_off(recognizer, tmp_path, mnist):
    settings = FeedbackSettings(enabled=False, exposed=True, db=str(tmp_path / "fb.sqlite3"))
    app = build_app(recognizer, settings)
    with Server(app) as url:
        data = digit_png(mnist.test_images[0])
        r = httpx.post(f"{url}/api/feedback", files={"file": ("d.png", data)}, data={"label": "1"})
        assert r.status_code == 403 and "--feedback" in r.json()["detail"]
        assert httpx.get(f"{url}/api/feedback/stats").status_code == 403
    assert not Path(settings.db).exists()  # no store was even created
    assert app.state.feedback.status()["enabled"] is False


def test_concurrent_clients_every_acknowledged_correction_is_stored(served, mnist):
    url, ctx = served
    payloads = [digit_png(mnist.test_images[i], scale=4) for i in range(48)]

    def post(i: int) -> int:
        with httpx.Client() as client:
            r = client.post(
                f"{url}/api/feedback",
                files={"file": ("d.png", payloads[i])},
                data={"label": str(mnist.test_labels[i])},
            )
        assert r.status_code == 201, r.text
        return r.json()["id"]

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(post, range(48)))
    assert len(set(ids)) == 48 == ctx.store.count()


def test_openapi_documents_the_feedback_routes(served):
    url, _ = served
    spec = httpx.get(f"{url}/openapi.json").json()
    post = spec["paths"]["/api/feedback"]["post"]
    assert set(post["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert {"413", "415", "422"} <= set(post["responses"])
    assert (
        "/api/feedback/stats" in spec["paths"] and "/api/feedback/{correction_id}" in spec["paths"]
    )


@pytest.mark.slow  # a real fine-tune with MNIST validation before and after: ~1-3 min here
def test_improve_switches_models_without_failing_a_request(
    recognizer, tmp_path, monkeypatch, mnist, mnist_dir
):
    monkeypatch.setenv("DIGITLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DIGITLAB_DATA", str(mnist_dir))
    app = build_app(recognizer, FeedbackSettings(db=str(tmp_path / "fb.sqlite3")))
    app.state.feedback.extra["finetune"] = {"steps": 10, "eval_test": False}
    with Server(app) as url:
        for i in range(12):
            r = httpx.post(
                f"{url}/api/feedback",
                files={"file": ("d.png", digit_png(mnist.test_images[i], scale=4))},
                data={"label": str(mnist.test_labels[i])},
            )
            assert r.status_code == 201
        started = httpx.post(f"{url}/api/feedback/improve")
        assert started.status_code == 202, started.text
        assert started.json()["state"] == "running" and started.json()["corrections"] == 12
        assert httpx.post(f"{url}/api/feedback/improve").status_code == 409
        sources, statuses = [], []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            probe = httpx.get(f"{url}/probe", timeout=60)
            assert probe.status_code == 200  # no request fails during the switch
            sources.append(probe.json()["source"])
            status = httpx.get(f"{url}/api/feedback/improve").json()
            statuses.append(status["state"])
            if status["state"] != "running":
                break
        assert status["state"] == "done", status
        assert status["result"]["accepted"] and 0 <= status["progress"] <= 1
        assert sources[0].endswith("default.pt")
        assert httpx.get(f"{url}/probe").json()["source"].endswith("personal.pt")
        r = httpx.post(
            f"{url}/api/feedback",
            files={"file": ("d.png", digit_png(mnist.test_images[20], scale=4))},
            data={"label": str(mnist.test_labels[20])},
        )
        assert r.json()["model_id"] == "digitnet:personal.pt"
    assert (tmp_path / "home" / "personal.pt").exists()
    app.state.feedback.close()


def test_serve_options_default_off_when_exposed_and_on_for_loopback():
    import argparse

    from digitlab.apps.feedback.options import add_serve_options, settings_from_args
    from digitlab.core.errors import DigitlabError

    parser = argparse.ArgumentParser()
    add_serve_options(parser)
    local = settings_from_args(parser.parse_args([]), "127.0.0.1", environ={})
    assert local.enabled and not local.exposed and "localhost" in local.allowed_hosts
    exposed = settings_from_args(parser.parse_args([]), "0.0.0.0", environ={})
    assert not exposed.enabled and exposed.exposed
    assert "start with --feedback" in exposed.banner()
    args = parser.parse_args(["--feedback", "--allowed-hosts", "digits.example:8000,*.lab.example"])
    on = settings_from_args(args, "0.0.0.0", environ={"DIGITLAB_ADMIN_TOKEN": "t"})
    assert on.enabled and on.admin_token == "t"
    assert on.allowed_hosts[:2] == ("digits.example", "*.lab.example")
    assert "127.0.0.1" in on.allowed_hosts  # a local admin's curl still works
    env_on = settings_from_args(
        parser.parse_args([]), "::", environ={"DIGITLAB_SERVE_FEEDBACK": "1"}
    )
    assert env_on.enabled
    with pytest.raises(DigitlabError, match="--feedback-max must be at least 1"):
        settings_from_args(parser.parse_args(["--feedback-max", "0"]), "127.0.0.1", environ={})


def test_full_store_is_507_with_the_reason(recognizer, tmp_path, mnist):
    settings = FeedbackSettings(db=str(tmp_path / "fb.sqlite3"), max_corrections=1)
    app = build_app(recognizer, settings)
    with Server(app) as url:
        for i, status in ((0, 201), (1, 507)):
            r = httpx.post(
                f"{url}/api/feedback",
                files={"file": ("d.png", digit_png(mnist.test_images[i]))},
                data={"label": "1"},
            )
            assert r.status_code == status, r.text
    assert "is full: it holds 1 corrections" in r.json()["detail"]
    app.state.feedback.close()


def test_unreachable_database_is_a_clear_error_at_start(recognizer, mnist):
    import socket

    from digitlab.apps.feedback.store import StoreError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = FeedbackSettings(db=f"postgresql://u@127.0.0.1:{port}/fb")
    with pytest.raises(StoreError, match="cannot reach the server"):
        build_app(recognizer, settings)  # a server does not start on a store it cannot reach


def test_settings_travel_to_worker_processes_through_the_environment():
    from digitlab.apps.feedback.options import settings_from_env

    settings = FeedbackSettings(
        enabled=True,
        exposed=True,
        admin_token="t0k",
        allowed_hosts=("digits.example", "127.0.0.1"),
        db="postgresql://u@db.example/fb",
        max_corrections=500,
    )
    again = settings_from_env("0.0.0.0", settings.to_env())
    assert again.enabled and again.exposed and again.admin_token == "t0k"
    assert again.db == "postgresql://u@db.example/fb"
    assert again.allowed_hosts[0] == "digits.example"


def test_forged_host_with_a_broken_body_logs_no_traceback(served):
    """uvicorn answers a malformed chunked body itself (400) before the Host check runs; the
    check's own 400 then has no connection to go to and must not end as an ASGI exception."""
    import logging
    import socket
    import time

    url, _ = served
    host, port = url.removeprefix("http://").rsplit(":", 1)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(level=logging.ERROR)
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(keep)
    try:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /api/feedback HTTP/1.1\r\nHost: evil.example\r\n"
                b"Transfer-Encoding: chunked\r\n\r\nZZZ\r\nnot a chunk\r\n"
            )
            answer = sock.recv(4096)
        time.sleep(0.5)  # the app task runs after uvicorn's own answer
    finally:
        logger.removeHandler(keep)
    assert answer.startswith(b"HTTP/1.1 400")
    assert [r.getMessage() for r in records] == []
    assert httpx.get(f"{url}/api/feedback/stats").status_code == 200
