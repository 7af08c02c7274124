"""Load test of ``digitlab serve`` against a bare reference server started in the same run.

The **reference** is the least a digit server can do: plain FastAPI + ONNX Runtime + the
shipped ``default.onnx`` (decode, grey, resize to 28x28, one forward pass, JSON), one model
thread, the same uvicorn options. Both servers run in their own processes on loopback, the
clients in this one, all on the same cores; each scenario runs against the reference and then
``digitlab serve`` back to back, and digitlab's figures are reported as ratios to the
reference's (the machine is shared and noisy: absolute numbers move, ratios less so).

Scenarios (issue #16's targets in brackets):

1. **one client, MNIST-size PNG** (a 28x28 test digit): p50 latency [<= 2x the reference's];
2. **one client, canvas PNG** (the same digit on the page's 280x280 canvas): p50 [<= 2.5x]
   (1 and 2 alternate between the servers in ``--rounds`` windows, pooled per server), and
   for information the 28x28 PNG with ``?images=false`` (no preview PNG, as API clients ask);
3. **32 clients x 30 s, canvas PNG**: requests/s [>= 0.75x], p99 [<= 250 ms], errors [0];
4. **mixed load** on digitlab only: clients cycling predict, batch (4 images), number, model
   info and the page [0 errors];
5. **fuzz**: ``--fuzz`` malformed requests (:func:`malformed_requests`; 2,000 by default) on
   fresh connections [0 5xx], with the server's RSS before and after;
6. **a 30 MB upload from urllib** (which writes the whole body before reading): must get the
   JSON 413, not "connection reset by peer".

Every request of 1-3 is ``POST /api/predict`` with multipart field ``file``; every answer must
be a 200 whose ``digit`` matches the server's first answer. The clients are a small asyncio
HTTP/1.1 keep-alive client with the request bytes built once, so they cost the shared CPU as
little as possible. Runs are bounded: every client stops at its deadline and the servers are
stopped at the end.

``--server-src DIR`` runs ``digitlab serve`` from another source tree (PYTHONPATH), e.g. an
older commit unpacked with ``git archive``, to measure "before" with the same clients.

Writes ``benchmarks/results/serve_load.json`` and ``.md`` (``--out``).

    python benchmarks/serve_load.py                         # the full run (~4 min)
    python benchmarks/serve_load.py --workers 2 --out /tmp/w2
    python benchmarks/serve_load.py --compare-workers 1 2 --rounds 3 \
        --out benchmarks/results/serve_load.workers
    python benchmarks/serve_load.py --reference-server --port 8123   # only the reference
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from fastapi import FastAPI, File, UploadFile
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, mnist_dir
from digitlab.apps.server.settings import default_workers

REPO = Path(__file__).resolve().parents[1]
TARGET_SINGLE_SMALL_RATIO = 2.0
TARGET_SINGLE_CANVAS_RATIO = 2.5
TARGET_THROUGHPUT_RATIO = 0.75
TARGET_P99_MS = 250.0
TARGET_CLIENTS = 32
TARGET_DURATION_S = 30.0
DEFAULT_SINGLE_DURATION_S = 10.0
DEFAULT_ROUNDS = 5
DEFAULT_MIXED_DURATION_S = 15.0
DEFAULT_FUZZ = 2000
WARMUP_REQUESTS = 20
REQUEST_TIMEOUT_S = 30.0
FUZZ_TIMEOUT_S = 3.0  # a request unanswered by then counts as "none"
SERVER_START_TIMEOUT_S = 120.0
CANVAS = 280  # the drawing page's canvas: 10 px per MNIST pixel
PERCENTILES = (50, 95, 99)
BOUNDARY = "digitlabbenchboundary"
HTTP_OK = 200
SERVER_ERROR = 500
# Which MNIST test images the payloads show (index 0 is a 7).
PAYLOAD_INDEX = 0
# Single-client scenarios: key, payload, path, title. The targets are set on the first two (the
# API's default answer, with the 28x28 preview PNG); the third asks for no preview, as the issue
# says API clients do (`?images=false`), and is reported for information: the reference's
# answer has no preview either (it ignores the query).
SINGLE_SCENARIOS = (
    ("small", "small", "/api/predict", "one client, small PNG"),
    ("canvas", "canvas", "/api/predict", "one client, canvas PNG"),
    (
        "small_no_preview",
        "small",
        "/api/predict?images=false",
        "one client, small PNG, ?images=false",
    ),
)
NUMBER_INDICES = (1, 2, 3)
BATCH_SIZE = 4
BIG_UPLOAD_BYTES = 30 * 1024 * 1024
MEBIBYTE = 1024 * 1024


@dataclass
class RunResult:
    """One load run's numbers."""

    name: str
    server: str
    clients: int
    duration_s: float
    requests: int
    errors: int
    requests_per_s: float
    latency_ms: dict[str, float]
    error_samples: list[str] = field(default_factory=list)
    # CPU the server process (and its workers) spent per answered request: on a shared machine
    # the steadiest figure (other work moves requests/s, much less the CPU a request costs).
    server_cpu_ms: float | None = None


# ------------------------------------------------------------------------------------------
# payloads
# ------------------------------------------------------------------------------------------


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def payloads(data_dir: str | None) -> tuple[dict[str, bytes], str]:
    """``{"small": 28x28 PNG, "canvas": 280x280 PNG, "number": three digits side by side}``,
    dark ink on white as a user would send them."""
    if data_dir:
        from digitlab.training.data import load_mnist

        mnist = load_mnist(data_dir, download=False)
        digit = Image.fromarray(255 - mnist.test_images[PAYLOAD_INDEX])
        label = int(mnist.test_labels[PAYLOAD_INDEX])
        what = f"MNIST test image {PAYLOAD_INDEX} (label {label})"
        pieces = [255 - mnist.test_images[i] for i in NUMBER_INDICES]
    else:
        digit = Image.new("L", (28, 28), 255)
        ImageDraw.Draw(digit).line([(8, 6), (20, 6), (12, 23)], fill=0, width=2)
        what = "a drawn 7 (MNIST not found)"
        pieces = [np.asarray(digit)] * len(NUMBER_INDICES)
    gap = np.full((28, 8), 255, np.uint8)
    row = np.hstack([gap] + [p for piece in pieces for p in (piece, gap)])
    number = Image.fromarray(row).resize((row.shape[1] * 4, 28 * 4), Image.BILINEAR)
    return {
        "small": png_bytes(digit),
        "canvas": png_bytes(digit.resize((CANVAS, CANVAS), Image.BILINEAR)),
        "number": png_bytes(number),
    }, what


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart body with ``files`` as (field, data) and its Content-Type."""
    body = b""
    for i, (name, data) in enumerate(files):
        body += (
            (
                f"--{BOUNDARY}\r\n"
                f'Content-Disposition: form-data; name="{name}"; filename="d{i}.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    body += f"--{BOUNDARY}--\r\n".encode()
    return body, f"multipart/form-data; boundary={BOUNDARY}"


def http_request(
    host: str,
    method: str,
    path: str,
    body: bytes = b"",
    content_type: str | None = None,
    extra: str = "",
) -> bytes:
    """Raw HTTP/1.1 request bytes."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    return (head + extra + "\r\n").encode() + body


def predict_request(host: str, png: bytes, path: str = "/api/predict") -> bytes:
    body, ctype = multipart([("file", png)])
    return http_request(host, "POST", path, body, ctype)


# ------------------------------------------------------------------------------------------
# servers
# ------------------------------------------------------------------------------------------


def reference_app() -> FastAPI:
    """The bare reference: decode, grey, resize 28x28, one ONNX forward pass, JSON."""
    import onnxruntime as ort

    from digitlab.core.resolve import resolve_model

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    path = str(resolve_model(None, prefer_onnx=True).path)
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    app = FastAPI()

    @app.post("/api/predict")
    async def predict(file: UploadFile = File(...)) -> dict:  # noqa: B008 (FastAPI idiom)
        img = Image.open(io.BytesIO(await file.read())).convert("L").resize((28, 28))
        x = (255.0 - np.asarray(img, np.float32)) / 255.0  # ink bright, as MNIST
        logits = session.run(None, {input_name: x.reshape(1, 1, 28, 28)})[0][0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return {"digit": int(p.argmax()), "probabilities": p.tolist()}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    return app


def serve_reference(port: int) -> None:
    """Run the reference server (``--reference-server``) with digitlab's uvicorn options."""
    import uvicorn

    uvicorn.run(
        reference_app(),
        host="127.0.0.1",
        port=port,
        access_log=False,
        log_level="warning",
        ws="none",
        http="h11",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(cmd: list[str], env: dict[str, str], port: int) -> tuple[subprocess.Popen, str]:
    """Start ``cmd``; returns the process and its base URL once ``/healthz`` answers."""
    import httpx

    # The server's log goes to a file, not a pipe: nobody reads a pipe during the run, and a
    # server whose log fills the pipe's 64 KiB (the fuzz run's tracebacks do) blocks in its
    # next write, its event loop with it: every later request went unanswered.
    with tempfile.TemporaryFile() as log:  # the child keeps its own descriptor of it
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log.seek(0)
                raise SystemExit(f"server exited: {log.read().decode(errors='replace')[-2000:]}")
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == HTTP_OK:
                    return proc, url
            except httpx.TransportError:
                time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not start in time: {cmd}")


def start_digitlab(
    args: argparse.Namespace, workers: int | None = None
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "digitlab", "serve", "--port", str(port), "--no-access-log"]
    if workers or args.workers:  # else the default, as a user starts it
        cmd += ["--workers", str(workers or args.workers)]
    if args.model:
        cmd += ["--model", args.model]
    if args.backend:
        cmd += ["--backend", args.backend]
    if args.device:
        cmd += ["--device", args.device]
    env = dict(os.environ)
    if args.server_src:
        env["PYTHONPATH"] = str(Path(args.server_src).resolve())
    return start_server(cmd, env, port)


def start_reference() -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--reference-server", "--port", str(port)]
    return start_server(cmd, dict(os.environ), port)


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(2)  # SIGINT, like Ctrl+C
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (workers), in MiB."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            for task in Path(f"/proc/{p}/task").iterdir():
                pids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return round(total / 1024, 1)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children (workers) so far."""
    total = 0.0
    pids = [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while pids:
        p = pids.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                pids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


# ------------------------------------------------------------------------------------------
# the clients
# ------------------------------------------------------------------------------------------


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    body = await reader.readexactly(length)
    return status, body


async def client_loop(
    host: str,
    port: int,
    requests: list[bytes],
    offset: int,
    deadline: float,
    expect: int | None,
    latencies: list[float],
    errors: list[str],
) -> None:
    """Send ``requests`` in turn, back to back on one keep-alive connection, until the
    deadline. With ``expect``, every answer's ``digit`` must be it."""
    reader = writer = None
    k = offset
    while time.perf_counter() < deadline:
        request = requests[k % len(requests)]
        k += 1
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            start = time.perf_counter()
            writer.write(request)
            status, body = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT_S)
            elapsed = time.perf_counter() - start
            if status != HTTP_OK:
                errors.append(f"HTTP {status}: {body[:200]!r}")
                continue
            if expect is not None and json.loads(body)["digit"] != expect:
                errors.append(f"digit {json.loads(body)['digit']} != {expect}")
                continue
            latencies.append(elapsed)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            if writer is not None:
                writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def load_run(
    url: str, requests: list[bytes], clients: int, duration: float, expect: int | None
) -> tuple[list[float], list[str], float]:
    parts = urlsplit(url)
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    deadline = start + duration
    tasks = [
        client_loop(parts.hostname, parts.port, requests, i, deadline, expect, latencies, errors)
        for i in range(clients)
    ]
    await asyncio.wait_for(asyncio.gather(*tasks), duration + REQUEST_TIMEOUT_S + 5)
    return latencies, errors, time.perf_counter() - start


def run(
    name: str,
    server: str,
    url: str,
    requests: list[bytes],
    clients: int,
    duration: float,
    expect: int | None,
    pid: int | None = None,
) -> RunResult:
    """``clients`` clients for ``duration`` s; with ``pid``, the server's CPU is measured too."""
    before = cpu_s(pid) if pid else 0.0
    lat, errors, elapsed = asyncio.run(load_run(url, requests, clients, duration, expect))
    cpu = cpu_s(pid) - before if pid else None
    return summarise(name, server, clients, lat, errors, elapsed, cpu)


def run_rounds(
    name: str,
    targets: dict[str, tuple[str, list[bytes], int | None, int | None]],
    duration: float,
    rounds: int,
) -> dict[str, RunResult]:
    """One client against each server in turn, ``rounds`` times, ``duration / rounds`` s each
    time: the servers are sampled in alternating windows, so that a change in the machine's
    background load weighs on both alike. ``targets``: server -> (url, requests, expect,
    server pid or None)."""
    pooled: dict[str, tuple[list[float], list[str], list[float], list[float]]] = {
        server: ([], [], [], []) for server in targets
    }
    for _ in range(rounds):
        for server, (url, requests, expect, pid) in targets.items():
            before = cpu_s(pid) if pid else 0.0
            lat, errors, elapsed = asyncio.run(
                load_run(url, requests, 1, duration / rounds, expect)
            )
            pooled[server][0].extend(lat)
            pooled[server][1].extend(errors)
            pooled[server][2].append(elapsed)
            if pid:
                pooled[server][3].append(cpu_s(pid) - before)
    return {
        server: summarise(name, server, 1, lat, errors, sum(times), sum(cpu) if cpu else None)
        for server, (lat, errors, times, cpu) in pooled.items()
    }


def summarise(
    name: str,
    server: str,
    clients: int,
    lat: list[float],
    errors: list[str],
    elapsed: float,
    cpu: float | None = None,
) -> RunResult:
    """A run's numbers from its latencies (s), errors and the server's CPU seconds."""
    ms = np.array(lat) * 1000.0
    latency = (
        {f"p{p}": round(float(np.percentile(ms, p)), 2) for p in PERCENTILES}
        | {"mean": round(float(ms.mean()), 2), "max": round(float(ms.max()), 2)}
        if len(ms)
        else {}
    )
    result = RunResult(
        name=name,
        server=server,
        clients=clients,
        duration_s=round(elapsed, 2),
        requests=len(lat),
        errors=len(errors),
        requests_per_s=round(len(lat) / elapsed, 1),
        latency_ms=latency,
        error_samples=sorted(set(errors))[:5],
        server_cpu_ms=round(cpu * 1000.0 / len(lat), 2) if cpu is not None and lat else None,
    )
    print(json.dumps(asdict(result)), flush=True)
    return result


def expected_digit(url: str, png: bytes) -> int | None:
    import httpx

    for _ in range(WARMUP_REQUESTS):
        r = httpx.post(url + "/api/predict", files={"file": ("d.png", png)}, timeout=30)
        r.raise_for_status()
    return r.json()["digit"]


# ------------------------------------------------------------------------------------------
# malformed requests (shared with tests/test_server.py's fuzz test)
# ------------------------------------------------------------------------------------------

ROUTES = ("/api/predict", "/api/predict/batch", "/api/number")


def _mutate(data: bytes, rng: random.Random) -> bytes:
    """Flip, drop, duplicate or truncate bytes of ``data``."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not b:
            break
        i = rng.randrange(len(b))
        op = rng.randrange(4)
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            del b[i : i + rng.randint(1, 64)]
        elif op == 2:
            b[i:i] = b[i : i + rng.randint(1, 64)]
        else:
            del b[i:]
    return bytes(b)


def malformed_requests(host: str, png: bytes, count: int, seed: int = 0) -> Iterator[bytes]:
    """``count`` raw HTTP requests that are wrong in one way or another (seeded).

    Broken images (bit flips, truncation, random bytes, other formats' headers), broken
    multipart and JSON bodies, wrong field types and names, bad strokes, bad query values,
    wrong methods and paths, and malformed request lines and headers. Each asks for
    ``Connection: close``. A correct server answers each with a 4xx (or a 200 where the damage
    happens to leave a readable image), never a 5xx.
    """
    rng = random.Random(seed)
    b64 = base64.b64encode(png).decode()
    close = "Connection: close\r\n"
    json_bodies = [
        {"image": 123},
        {"image": None},
        {"image": ["x"]},
        {"images": "x"},
        {"images": [1, 2]},
        {"image": "data:image/png;base64," + b64[: len(b64) // 2]},
        {"image": "data:image/png;base64,@@@@"},
        {"image": "data:;base64," + b64, "extra": 1},
        {"image": b64, "strokes": "no"},
        {"image": b64, "strokes": [[[1, 2, 3, 4]]]},
        {"image": b64, "strokes": [[["a", 2]]]},
        {"image": b64, "strokes": [[[0, 0]]] * 300},
        {"image": b64, "strokes": [[[1e308, 1e308]]]},
        {"image": "data:image/svg+xml;base64,PHN2Zy8+"},
        {},
        [],
        "image",
    ]
    heads = [
        b"GARBAGE\r\n\r\n",
        b"POST /api/predict HTTP/9.9\r\nHost: x\r\n\r\n",
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Content-Length: 4\r\n\r\nabcd",
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"b" * 20000 + b"\r\n\r\n",
        b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /static/../server/app.py HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00\x01\x02\xff\r\n\r\n",
    ]
    for i in range(count):
        kind = i % 8
        route = rng.choice(ROUTES)
        field = "files" if route.endswith("batch") else "file"
        if kind == 0:  # a damaged image
            body, ctype = multipart([(field, _mutate(png, rng))])
            yield http_request(host, "POST", route, body, ctype, close)
        elif kind == 1:  # random bytes or another format's header
            junk = rng.choice(
                [
                    rng.randbytes(rng.randint(0, 2048)),
                    b"GIF89a" + rng.randbytes(40),
                    b"BM" + rng.randbytes(60),
                    b"\xff\xd8\xff\xe0" + rng.randbytes(100),
                    b"II*\x00" + rng.randbytes(100),
                    b"P5\n99999 99999\n255\n" + rng.randbytes(10),
                ]
            )
            body, ctype = multipart([(field, junk)])
            yield http_request(host, "POST", route, body, ctype, close)
        elif kind == 2:  # a damaged multipart body (its Content-Length still right)
            body, ctype = multipart([(field, png)])
            ctype = rng.choice([ctype, "multipart/form-data", "multipart/form-data; boundary="])
            yield http_request(host, "POST", route, _mutate(body, rng), ctype, close)
        elif kind == 3:  # wrong JSON
            value = rng.choice(json_bodies)
            text = json.dumps(value).encode()
            if rng.random() < 0.3:
                text = _mutate(text, rng)
            ctype = rng.choice(["application/json", "application/problem+json", "text/plain"])
            yield http_request(host, "POST", route, text, ctype, close)
        elif kind == 4:  # bad query values
            query = rng.choice(["explain=maybe", "images=2", "explain=", "images=%00"])
            body, ctype = multipart([(field, png)])
            yield http_request(host, "POST", f"{route}?{query}", body, ctype, close)
        elif kind == 5:  # wrong method or path
            method = rng.choice(["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
            path = rng.choice([*ROUTES, "/api/model", "/nope", "/static/nope.js", "/docs"])
            yield http_request(host, method, path, b"", None, close)
        elif kind == 6:  # malformed request line or headers
            yield rng.choice(heads)
        else:  # strokes as a multipart text field
            strokes = rng.choice(["[[[1,2]]]x", '"no"', "[[[1,2,3,4]]]", "[[[NaN,1]]]", "{}"])
            body = (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="strokes"\r\n\r\n'
                f"{strokes}\r\n"
            ).encode()
            file_body, ctype = multipart([("file", png)])
            yield http_request(host, "POST", "/api/number", body + file_body, ctype, close)


def send_raw(host: str, port: int, request: bytes, timeout: float = FUZZ_TIMEOUT_S) -> int | None:
    """Send one raw request on a fresh connection; the status code, or None without one."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        # the server may answer (and close) before it has read everything
        with contextlib.suppress(OSError):
            sock.sendall(request)
        reply = b""
        try:
            while b"\r\n" not in reply:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except OSError:
            return None
    try:
        return int(reply.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def fuzz(url: str, png: bytes, count: int, seed: int = 0) -> dict[str, int]:
    """Send :func:`malformed_requests`; a histogram of the statuses ("none" = no answer)."""
    parts = urlsplit(url)
    seen: Counter[str] = Counter()
    for request in malformed_requests(parts.netloc, png, count, seed):
        status = send_raw(parts.hostname, parts.port, request)
        seen[str(status) if status is not None else "none"] += 1
    return dict(sorted(seen.items()))


def big_upload(url: str, size: int = BIG_UPLOAD_BYTES) -> dict:
    """POST ``size`` bytes with urllib (which sends the whole body before reading)."""
    body, ctype = multipart([("file", b"\0" * size)])
    request = urllib.request.Request(
        url + "/api/predict", data=body, headers={"Content-Type": ctype}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return {"status": response.status, "detail": None}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "detail": json.loads(exc.read()).get("detail")}
    except OSError as exc:
        return {"status": None, "detail": f"{type(exc).__name__}: {exc}"}


# ------------------------------------------------------------------------------------------
# CPU time per request, step by step (in this process: load on the machine barely moves it)
# ------------------------------------------------------------------------------------------

CPU_REPEATS = 60
CPU_TRIALS = 5


def cpu_ms(func, repeats: int = CPU_REPEATS, trials: int = CPU_TRIALS) -> float:
    """Best-of-``trials`` mean CPU time (``process_time``) of ``func()``, in ms."""
    for _ in range(3):
        func()
    best = float("inf")
    for _ in range(trials):
        start = time.process_time()
        for _ in range(repeats):
            func()
        best = min(best, (time.process_time() - start) / repeats * 1000.0)
    return round(best, 3)


def cpu_breakdown(pngs: dict[str, bytes]) -> dict[str, dict[str, float]]:
    """What one request costs in CPU: the reference's whole pipeline vs digitlab's steps (the
    serving backend, one model thread): decode, preprocess, the forward pass of the image and
    its stability views (read only for a reading below recognizer.STABILITY_CHECK_BELOW) with
    the recogniser's rules, and the JSON dict with the preview
    PNG. The HTTP and multipart work, the same for both servers, is not included."""
    import onnxruntime as ort

    from digitlab.apps.server.app import load_recognizer
    from digitlab.apps.server.settings import ServerSettings
    from digitlab.core.resolve import resolve_model
    from digitlab.engine.decode import decode_bytes
    from digitlab.engine.preprocess import to_model_input

    recognizer = load_recognizer(ServerSettings())
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    path = str(resolve_model(None, prefer_onnx=True).path)
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = {}
    for key in ("small", "canvas"):
        data = pngs[key]

        def reference(data: bytes = data) -> None:
            img = Image.open(io.BytesIO(data)).convert("L").resize((28, 28))
            x = (255.0 - np.asarray(img, np.float32)) / 255.0
            session.run(None, {name: x.reshape(1, 1, 28, 28)})

        image = decode_bytes(data, "x")
        pre = to_model_input(image)
        prediction = recognizer.predict_preprocessed([pre])[0]
        steps = {
            "reference_pipeline": cpu_ms(reference),
            "decode": cpu_ms(lambda data=data: decode_bytes(data, "x")),
            "preprocess": cpu_ms(lambda image=image: to_model_input(image)),
            "predict": cpu_ms(lambda pre=pre: recognizer.predict_preprocessed([pre])),
            "json_with_preview": cpu_ms(lambda p=prediction: p.to_dict(images=True)),
        }
        steps["digitlab_total"] = round(
            sum(v for k, v in steps.items() if k != "reference_pipeline"), 3
        )

        def pipeline(data: bytes = data) -> None:
            pre = to_model_input(decode_bytes(data, "x"))
            recognizer.predict_preprocessed([pre])[0].to_dict(images=True)

        # The steps one after another, as a request runs them (and as the reference pipeline
        # is timed): each step alone runs with its data and the model hot in the caches, so
        # their sum understates (decoding, preprocessing and predicting a 28x28 PNG: 1.12 ms in
        # sequence against 0.99 summed, on the 2-core AMD machine).
        steps["digitlab_pipeline"] = cpu_ms(pipeline)
        steps["ratio"] = ratio(steps["digitlab_pipeline"], steps["reference_pipeline"])
        out[key] = steps
    return out


# ------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------


def _predict_ms(cpu: dict) -> float:
    """The predict step of a cpu_breakdown entry (named predict_5_views before the views were
    made conditional, in results files written then)."""
    return cpu.get("predict", cpu.get("predict_5_views"))


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def target(name: str, value, goal: str, met: bool) -> dict:
    return {"name": name, "value": value, "target": goal, "met": bool(met)}


def compare_workers(args: argparse.Namespace) -> dict:
    """``--compare-workers 1 2``: the reference and one digitlab server per worker count, all
    started at once; ``--clients`` clients against each in turn, ``--rounds`` times,
    ``--duration / --rounds`` seconds each time (alternating windows, so that background load
    weighs on all alike); requests/s and latency per server, pooled over the rounds."""
    pngs, what = payloads(mnist_dir(args.data_dir))
    load_before = [round(x, 2) for x in os.getloadavg()]
    servers = {"reference": start_reference()}
    for n in args.compare_workers:
        servers[f"digitlab --workers {n}"] = start_digitlab(args, n)
    pooled: dict[str, tuple[list[float], list[str], list[float]]] = {
        s: ([], [], []) for s in servers
    }
    try:
        for _ in range(args.rounds):
            for name, (_, url) in servers.items():
                expected_digit(url, pngs["canvas"])
                req = [predict_request(urlsplit(url).netloc, pngs["canvas"])]
                window = args.duration / args.rounds
                lat, errors, elapsed = asyncio.run(load_run(url, req, args.clients, window, None))
                pooled[name][0].extend(lat)
                pooled[name][1].extend(errors)
                pooled[name][2].append(elapsed)
    finally:
        for proc, _ in servers.values():
            stop_server(proc)
    runs = [
        summarise(f"{args.clients} clients, canvas PNG", name, args.clients, lat, err, sum(t))
        for name, (lat, err, t) in pooled.items()
    ]
    reference = runs[0].requests_per_s
    return {
        "machine": machine(),
        "payload": what,
        "payload_bytes": {k: len(v) for k, v in pngs.items()},
        "rounds": args.rounds,
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "runs": [asdict(r) | {"ratio": ratio(r.requests_per_s, reference)} for r in runs],
    }


def workers_markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# `digitlab serve --workers N` vs the bare reference (32 clients, canvas PNG)",
        "",
        f"Alternating windows, {report['rounds']} rounds, pooled per server. Machine: "
        f"{m['processor']}, {m['cpu_count']} cores (shared, noisy; clients on the same cores). "
        f"Load average before {report['load_before']}, after {report['load_after']}.",
        "",
        "| server | requests | req/s | req/s / reference | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        lat = r["latency_ms"]
        lines.append(
            f"| {r['server']} | {r['requests']:,} | {r['requests_per_s']} | {r['ratio']} | "
            f"{lat.get('p50', '-')} | {lat.get('p99', '-')} | {r['errors']} |"
        )
    before = report.get("before")
    if before:
        lines += [
            "",
            f"**Before** (the run this file held until now, {before['date']}, load average "
            f"{before['load_before']}):",
            "",
            "| server | requests/s | req/s / reference | p50 ms | p99 ms |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in before["runs"]:
            lat = r.get("latency_ms") or {}
            lines.append(
                f"| {r['server']} | {r['requests_per_s']} | {r.get('ratio')} | "
                f"{lat.get('p50', '-')} | {lat.get('p99', '-')} |"
            )
    lines += ["", f"_{m['date']}_", ""]
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> dict:
    pngs, what = payloads(mnist_dir(args.data_dir))
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs: list[RunResult] = []
    servers = {"reference": start_reference(), "digitlab": start_digitlab(args)}
    extra: dict = {}
    try:
        expect = {
            (name, key): expected_digit(url, pngs[key])
            for name, (_, url) in servers.items()
            for key in ("small", "canvas")
        }
        host = {name: urlsplit(url).netloc for name, (_, url) in servers.items()}
        single = {}
        for key, png, path, title in SINGLE_SCENARIOS:
            if args.single_duration > 0:
                targets = {
                    name: (
                        url,
                        [predict_request(host[name], pngs[png], path)],
                        expect[name, png],
                        proc.pid,
                    )
                    for name, (proc, url) in servers.items()
                }
                runs_key = run_rounds(title, targets, args.single_duration, args.rounds)
                for name, result in runs_key.items():
                    single[name, key] = result
        concurrent = {}
        for name, (proc, url) in servers.items():
            req = [predict_request(host[name], pngs["canvas"])]
            concurrent[name] = run(
                f"{args.clients} clients, canvas PNG", name, url, req, args.clients,
                args.duration, expect[name, "canvas"], proc.pid,
            )  # fmt: skip
        proc, url = servers["digitlab"]
        h = host["digitlab"]
        batch_body, batch_type = multipart([("files", pngs["canvas"])] * BATCH_SIZE)
        mixed = [
            predict_request(h, pngs["canvas"]),
            http_request(h, "POST", "/api/predict/batch", batch_body, batch_type),
            predict_request(h, pngs["number"], "/api/number"),
            http_request(h, "GET", "/api/model"),
            predict_request(h, pngs["small"]),
            http_request(h, "GET", "/"),
        ]
        if args.mixed_duration > 0:
            runs_mixed = run(
                f"{args.clients} clients, mixed", "digitlab", url, mixed, args.clients,
                args.mixed_duration, None, proc.pid,
            )  # fmt: skip
        else:
            runs_mixed = None
        if args.fuzz:
            rss_before = rss_mib(proc.pid)
            start = time.perf_counter()
            statuses = fuzz(url, pngs["small"], args.fuzz)
            extra["fuzz"] = {
                "requests": args.fuzz,
                "seconds": round(time.perf_counter() - start, 1),
                "statuses": statuses,
                "server_errors": sum(n for s, n in statuses.items() if s[0] == "5"),
                "rss_mib_before": rss_before,
                "rss_mib_after": rss_mib(proc.pid),
                "healthy_after": (
                    expected_digit(url, pngs["canvas"]) == expect["digitlab", "canvas"]
                ),
            }
            print(json.dumps(extra["fuzz"]), flush=True)
        extra["big_upload"] = big_upload(url)
        if not args.server_src:
            extra["cpu_ms"] = cpu_breakdown(pngs)
            print(json.dumps(extra["cpu_ms"]), flush=True)
        print(json.dumps(extra["big_upload"]), flush=True)
    finally:
        for proc, _ in servers.values():
            stop_server(proc)

    runs = list(single.values()) + list(concurrent.values()) + ([runs_mixed] if runs_mixed else [])
    targets = []
    ratios = {}
    for key, goal in (("small", TARGET_SINGLE_SMALL_RATIO), ("canvas", TARGET_SINGLE_CANVAS_RATIO)):
        if ("digitlab", key) in single:
            r = ratio(
                single["digitlab", key].latency_ms.get("p50"),
                single["reference", key].latency_ms.get("p50"),
            )
            ratios[f"one client {key} p50"] = r
            targets.append(target(f"one client, {key} PNG: p50 / reference", r, f"<= {goal}",
                                  r is not None and r <= goal))  # fmt: skip
    if ("digitlab", "small_no_preview") in single:  # information: the targets use the default
        ratios["one client small_no_preview p50"] = ratio(
            single["digitlab", "small_no_preview"].latency_ms.get("p50"),
            single["reference", "small_no_preview"].latency_ms.get("p50"),
        )
    d, ref = concurrent["digitlab"], concurrent["reference"]
    r = ratio(d.requests_per_s, ref.requests_per_s)
    ratios[f"{args.clients} clients req/s"] = r
    full = args.clients >= TARGET_CLIENTS and args.duration >= TARGET_DURATION_S
    targets.append(target(f"{args.clients} clients: req/s / reference", r,
                          f">= {TARGET_THROUGHPUT_RATIO}", full and r is not None
                          and r >= TARGET_THROUGHPUT_RATIO))  # fmt: skip
    p99 = d.latency_ms.get("p99")
    targets.append(target(f"{args.clients} clients: p99 ms", p99, f"<= {TARGET_P99_MS:g}",
                          full and p99 is not None and p99 <= TARGET_P99_MS))  # fmt: skip
    targets.append(target(f"{args.clients} clients: errors", d.errors, "0",
                          full and d.errors == 0))  # fmt: skip
    if runs_mixed:
        targets.append(target("mixed load: errors", runs_mixed.errors, "0", runs_mixed.errors == 0))
    if "fuzz" in extra:
        f = extra["fuzz"]
        targets.append(target(f"fuzz ({f['requests']:,} malformed requests): 5xx",
                              f["server_errors"], "0", f["server_errors"] == 0
                              and f["healthy_after"]))  # fmt: skip
    b = extra["big_upload"]
    targets.append(target("30 MB urllib upload: status", b["status"], "413 with JSON detail",
                          b["status"] == 413 and bool(b["detail"])))  # fmt: skip
    return {
        "machine": machine(),
        "payload": what,
        "payload_bytes": {k: len(v) for k, v in pngs.items()},
        "server": {
            "workers": args.workers or default_workers(),
            "workers_default": args.workers is None,
            "model": args.model or "bundled",
            "backend": args.backend or "auto",
            "device": args.device or "cpu",
            "source": args.server_src or "this tree",
        },
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "note": "shared, noisy machine; clients and servers share the cores",
        "runs": [asdict(r) for r in runs],
        "ratios": ratios,
        **extra,
        "targets": targets,
    }


def before_summary(old: dict) -> dict:
    """The figures of a previous run (its file is being replaced) to show beside the new."""
    return {
        "date": old.get("machine", {}).get("date"),
        "source": old.get("server", {}).get("source"),
        "workers": old.get("server", {}).get("workers"),
        "load_before": old.get("load_before"),
        "runs": [
            {
                k: r.get(k)
                for k in ("name", "server", "requests_per_s", "latency_ms", "server_cpu_ms")
            }
            for r in old.get("runs", [])
        ],
        "ratios": old.get("ratios", {}),
        "cpu_ms": old.get("cpu_ms"),
    }


def before_markdown(before: dict) -> list[str]:
    """The "before" section: the previous run's table rows and ratios."""
    lines = [
        "",
        f"**Before** (the run this file held until now, {before['date']}, "
        f"{before['workers']} worker(s), load average {before['load_before']}):",
        "",
        "| run | server | req/s | p50 ms | p99 ms | server CPU ms / request |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in before["runs"]:
        lat = r.get("latency_ms") or {}
        lines.append(
            f"| {r['name']} | {r['server']} | {r['requests_per_s']} | {lat.get('p50', '-')} | "
            f"{lat.get('p99', '-')} | {r.get('server_cpu_ms') or '-'} |"
        )
    ratios = ", ".join(f"{k}: {v}" for k, v in before["ratios"].items())
    lines += ["", f"Ratios to the reference then: {ratios}."]
    if before.get("cpu_ms"):
        cpu = "; ".join(
            f"{k}: preprocess {c['preprocess']}, forward {_predict_ms(c)}, "
            f"total {c['digitlab_total']} vs reference {c['reference_pipeline']}"
            for k, c in before["cpu_ms"].items()
        )
        lines.append(f"In-process CPU ms then: {cpu}.")
    return lines


def markdown(report: dict) -> str:
    m = report["machine"]
    sizes = report["payload_bytes"]
    server = report["server"]
    lines = [
        "# Serving load test (`digitlab serve` vs a bare reference, on loopback)",
        "",
        f"Payloads: {report['payload']} as a 28x28 PNG ({sizes['small']:,} bytes) and on a "
        f"{CANVAS}x{CANVAS} canvas ({sizes['canvas']:,} bytes), `POST /api/predict` multipart. "
        f"digitlab: {server['workers']} worker(s)"
        f"{' (its default on this machine)' if server.get('workers_default') else ''}, "
        f"model `{server['model']}`, backend "
        f"`{server['backend']}`, device `{server.get('device', 'cpu')}`, code from "
        f"{server['source']}. Reference: FastAPI + ONNX "
        "Runtime + `default.onnx` (decode, grey, resize, one forward pass, JSON).",
        f"Machine: {m['processor']}, {m['cpu_count']} cores, Python {m['python']}. Load average "
        f"before {report['load_before']}, after {report['load_after']}.",
        "**The machine is shared with other work and noisy**: clients and servers run on the "
        f"same {m['cpu_count']} cores, so absolute numbers are a floor; the ratios to the "
        "reference, measured back to back, are the figures to compare.",
        "",
        "| run | server | clients | s | requests | req/s | p50 ms | p95 ms | p99 ms | max ms "
        "| errors | server CPU ms / request |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        lat = r["latency_ms"]
        lines.append(
            f"| {r['name']} | {r['server']} | {r['clients']} | {r['duration_s']} | "
            f"{r['requests']:,} | {r['requests_per_s']:,} | {lat.get('p50', '-')} | "
            f"{lat.get('p95', '-')} | {lat.get('p99', '-')} | {lat.get('max', '-')} | "
            f"{r['errors']} | {r.get('server_cpu_ms') or '-'} |"
        )
    lines.append("")
    if "fuzz" in report:
        f = report["fuzz"]
        lines.append(
            f"Fuzz: {f['requests']:,} malformed requests in {f['seconds']} s, statuses "
            f"{f['statuses']}; server RSS {f['rss_mib_before']} MiB before, "
            f"{f['rss_mib_after']} MiB after; answers correctly after: {f['healthy_after']}."
        )
    b = report["big_upload"]
    lines.append(f"30 MB upload from urllib: status {b['status']}, detail `{b['detail']}`.")
    if "cpu_ms" in report:
        lines += [
            "",
            "CPU ms per request in-process (best of 5 x 60; the HTTP work, alike for both, "
            "excluded):",
            "",
            "| payload | reference pipeline | decode | preprocess | predict (views if unsure) "
            "| JSON + preview PNG | sum of the steps | digitlab pipeline | ratio |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key, c in report["cpu_ms"].items():
            lines.append(
                f"| {key} | {c['reference_pipeline']} | {c['decode']} | {c['preprocess']} | "
                f"{_predict_ms(c)} | {c['json_with_preview']} | {c['digitlab_total']} | "
                f"{c.get('digitlab_pipeline', '-')} | {c['ratio']} |"
            )
        lines += [
            "",
            "(The ratio is the digitlab pipeline's, timed as the reference's is: the steps one "
            "after another, as a request runs them; each step timed alone runs hot in the "
            "caches, so their sum is lower.)",
        ]
    lines.append("")
    for t in report["targets"]:
        lines.append(
            f"- target {t['name']}: {t['value']} vs {t['target']}: "
            f"{'met' if t['met'] else 'NOT met'}"
        )
    no_preview = report.get("ratios", {}).get("one client small_no_preview p50")
    if no_preview is not None:
        lines.append(
            f"- one client, small PNG, `?images=false` (no preview, as API clients ask; "
            f"information, the target is on the default answer): p50 / reference {no_preview}"
        )
    for r in report["runs"]:
        for sample in r["error_samples"]:
            lines.append(f"- {r['name']} ({r['server']}) error: `{sample}`")
    if report.get("before"):
        lines += before_markdown(report["before"])
    lines += ["", f"_{m['date']}_", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=TARGET_CLIENTS)
    parser.add_argument(
        "--duration", type=float, default=TARGET_DURATION_S, help="seconds of the concurrent run"
    )
    parser.add_argument(
        "--single-duration",
        type=float,
        default=DEFAULT_SINGLE_DURATION_S,
        help="seconds of each single-client latency run (0 skips them)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help="alternating windows of the single-client runs (reference, digitlab, ...)",
    )
    parser.add_argument(
        "--mixed-duration",
        type=float,
        default=DEFAULT_MIXED_DURATION_S,
        help="seconds of the mixed load (0 skips it)",
    )
    parser.add_argument("--fuzz", type=int, default=DEFAULT_FUZZ, help="malformed requests")
    parser.add_argument(
        "--workers",
        type=int,
        help="digitlab server processes (default: digitlab serve's own, one per core at most 4)",
    )
    parser.add_argument(
        "--compare-workers",
        type=int,
        nargs="+",
        metavar="N",
        help="only compare these worker counts under --clients (alternating windows)",
    )
    parser.add_argument("--model", default=None, help="checkpoint/.onnx (default: bundled)")
    parser.add_argument("--backend", default=None, help="digitlab serve --backend")
    parser.add_argument("--device", default=None, help="digitlab serve --device (e.g. cuda)")
    parser.add_argument("--server-src", default=None, help="run digitlab serve from this src")
    parser.add_argument("--data-dir", default=None, help="MNIST folder (for the payloads)")
    parser.add_argument(
        "--out", default=str(RESULTS / "serve_load"), help="output path without extension"
    )
    parser.add_argument("--reference-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reference_server:
        serve_reference(args.port)
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.compare_workers:
        report = compare_workers(args)
        previous = out.with_name(out.name + ".json")
        if previous.exists():  # the replaced file's figures stay in the text as "before"
            old = json.loads(previous.read_text())
            report["before"] = {
                "date": old.get("machine", {}).get("date"),
                "load_before": old.get("load_before"),
                "runs": old.get("runs", []),
            }
        out.with_name(out.name + ".json").write_text(json.dumps(report, indent=2) + "\n")
        out.with_name(out.name + ".md").write_text(workers_markdown(report))
        print(workers_markdown(report))
        return 0
    report = measure(args)
    # "serve_load.before" + ".json" (with_suffix would replace ".before")
    previous = out.with_name(out.name + ".json")
    if previous.exists():  # the file being replaced: its figures stay in the text as "before"
        report["before"] = before_summary(json.loads(previous.read_text()))
    out.with_name(out.name + ".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_name(out.name + ".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
