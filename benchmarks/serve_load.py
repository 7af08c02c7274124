"""Load test of ``digitlab serve`` on loopback: latency of one client, throughput of many.

Starts ``digitlab serve`` in a separate process (or uses ``--url``), then

1. **single client**: one client sends ``POST /api/predict`` back to back for
   ``--single-duration`` seconds: p50/p95/p99 end-to-end latency (target: p50 < 10 ms);
2. **concurrent**: ``--clients`` clients (32) send requests back to back for ``--duration``
   seconds (30): requests/s, latency percentiles and errors (target: zero errors).

Each request uploads the same 280x280 PNG the drawing page sends (an MNIST test digit, dark
ink on white, as drawn on the canvas) as multipart field ``file``; every answer must be a 200
whose ``digit`` matches the first answer. The clients are a small asyncio HTTP/1.1 keep-alive
client with the request bytes built once, so they cost the shared CPU as little as possible.
Runs are bounded: every client stops at its deadline and the server is stopped at the end.

``--concurrency 1 2 8`` repeats the concurrent run against servers that let 1, 2 or 8
requests into the recogniser at once (``DIGITLAB_SERVE_INFERENCE_CONCURRENCY``; 0, the
default, is one per core; 1 is a global lock).

Writes ``benchmarks/results/serve_load.json`` and ``.md``.

    python benchmarks/serve_load.py                      # 10 s single + 32 clients x 30 s
    python benchmarks/serve_load.py --concurrency 1 0 8
    python benchmarks/serve_load.py --workers 2 --single-duration 0 --out /tmp/w2
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, mnist_dir

TARGET_SINGLE_P50_MS = 10.0
TARGET_CLIENTS = 32
TARGET_DURATION_S = 30.0
DEFAULT_SINGLE_DURATION_S = 10.0
WARMUP_REQUESTS = 20
REQUEST_TIMEOUT_S = 30.0
SERVER_START_TIMEOUT_S = 120.0
CANVAS = 280  # the drawing page's canvas: 10 px per MNIST pixel
PERCENTILES = (50, 95, 99)
BOUNDARY = "digitlabbenchboundary"
HTTP_OK = 200
# Which MNIST test image the payload shows (index 0 is a 7).
PAYLOAD_INDEX = 0


@dataclass
class RunResult:
    """One load run's numbers."""

    name: str
    clients: int
    duration_s: float
    requests: int
    errors: int
    requests_per_s: float
    latency_ms: dict[str, float]
    error_samples: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------
# payload and server
# ------------------------------------------------------------------------------------------


def canvas_png(data_dir: str | None) -> tuple[bytes, str]:
    """The PNG the page would send: an MNIST digit (or a drawn 7) on a white 280x280 canvas."""
    if data_dir:
        from digitlab.training.data import load_mnist

        mnist = load_mnist(data_dir, download=False)
        digit = mnist.test_images[PAYLOAD_INDEX]
        img = Image.fromarray(255 - digit).resize((CANVAS, CANVAS), Image.BILINEAR)
        what = f"MNIST test image {PAYLOAD_INDEX} (label {int(mnist.test_labels[PAYLOAD_INDEX])})"
    else:
        img = Image.new("L", (CANVAS, CANVAS), 255)
        ImageDraw.Draw(img).line([(80, 60), (200, 60), (120, 230)], fill=0, width=22)
        what = "a drawn 7 (MNIST not found)"
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue(), what


def build_request(host: str, path: str, png: bytes) -> bytes:
    body = (
        (
            f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="file"; filename="drawing.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, concurrency: int) -> tuple[subprocess.Popen, str]:
    """``digitlab serve`` in its own process; returns it and its base URL once healthy."""
    import httpx

    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "digitlab",
        "serve",
        "--port",
        str(port),
        "--no-access-log",
        "--workers",
        str(args.workers),
    ]
    if args.model:
        cmd += ["--model", args.model]
    env = {**os.environ, "DIGITLAB_SERVE_INFERENCE_CONCURRENCY": str(concurrency)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == HTTP_OK:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start in time")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(2)  # SIGINT, like Ctrl+C
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------------
# the client
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
    request: bytes,
    deadline: float,
    expect: int | None,
    latencies: list[float],
    errors: list[str],
) -> None:
    """Send requests back to back on one keep-alive connection until the deadline."""
    reader = writer = None
    while time.perf_counter() < deadline:
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
            digit = json.loads(body)["digit"]
            if expect is not None and digit != expect:
                errors.append(f"digit {digit} != {expect}")
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
    url: str, path: str, png: bytes, clients: int, duration: float, expect: int | None
) -> tuple[list[float], list[str], float]:
    parts = urlsplit(url)
    request = build_request(parts.netloc, path, png)
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    deadline = start + duration
    tasks = [
        client_loop(parts.hostname, parts.port, request, deadline, expect, latencies, errors)
        for _ in range(clients)
    ]
    await asyncio.wait_for(asyncio.gather(*tasks), duration + REQUEST_TIMEOUT_S + 5)
    return latencies, errors, time.perf_counter() - start


def run(
    name: str, url: str, png: bytes, clients: int, duration: float, expect: int | None
) -> RunResult:
    lat, errors, elapsed = asyncio.run(
        load_run(url, "/api/predict", png, clients, duration, expect)
    )
    ms = np.array(lat) * 1000.0
    latency = (
        {f"p{p}": round(float(np.percentile(ms, p)), 2) for p in PERCENTILES}
        | {"mean": round(float(ms.mean()), 2), "max": round(float(ms.max()), 2)}
        if len(ms)
        else {}
    )
    return RunResult(
        name=name,
        clients=clients,
        duration_s=round(elapsed, 2),
        requests=len(lat),
        errors=len(errors),
        requests_per_s=round(len(lat) / elapsed, 1),
        latency_ms=latency,
        error_samples=sorted(set(errors))[:5],
    )


def expected_digit(url: str, png: bytes) -> int | None:
    import httpx

    for _ in range(WARMUP_REQUESTS):
        r = httpx.post(url + "/api/predict", files={"file": ("d.png", png)}, timeout=30)
        r.raise_for_status()
    return r.json()["digit"]


# ------------------------------------------------------------------------------------------
# reporting
# ------------------------------------------------------------------------------------------


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Serving load test (`digitlab serve` on loopback)",
        "",
        f"Payload: {report['payload']} as a {CANVAS}x{CANVAS} PNG ({report['payload_bytes']:,} "
        "bytes), `POST /api/predict` multipart. Server: "
        f"{report['server']['workers']} worker(s), model `{report['server']['model']}`.",
        f"Machine: {m['processor']}, {m['cpu_count']} cores, Python {m['python']}, torch "
        f"{m['torch']}. Load average before {report['load_before']}, after "
        f"{report['load_after']}.",
        "**The machine is shared with other work and noisy**: the clients run on the same 2 "
        "cores as the server, so these numbers are a floor, not a ceiling.",
        "",
        "| run | clients | s | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        lat = r["latency_ms"]
        lines.append(
            f"| {r['name']} | {r['clients']} | {r['duration_s']} | {r['requests']:,} | "
            f"{r['requests_per_s']:,} | {lat.get('p50', '-')} | {lat.get('p95', '-')} | "
            f"{lat.get('p99', '-')} | {lat.get('max', '-')} | {r['errors']} |"
        )
    lines.append("")
    for t in report["targets"]:
        lines.append(
            f"- target {t['name']}: {t['value']} vs {t['target']}: "
            f"{'met' if t['met'] else 'NOT met'}"
        )
    for r in report["runs"]:
        for sample in r["error_samples"]:
            lines.append(f"- {r['name']} error: `{sample}`")
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
        help="seconds of the single-client latency run",
    )
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--model", default=None, help="checkpoint/.onnx (default: bundled)")
    parser.add_argument("--url", default=None, help="test a running server instead")
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[0],
        metavar="N",
        help="server inference concurrency to test, one concurrent run each (0 = per core)",
    )
    parser.add_argument("--data-dir", default=None, help="MNIST folder (for the payload)")
    parser.add_argument(
        "--out", default=str(RESULTS / "serve_load"), help="output path without extension"
    )
    args = parser.parse_args(argv)

    png, what = canvas_png(mnist_dir(args.data_dir))
    load_before = [round(x, 2) for x in os.getloadavg()]
    single: RunResult | None = None
    concurrent: list[RunResult] = []
    for i, slots in enumerate(args.concurrency[:1] if args.url else args.concurrency):
        proc, url = (None, args.url) if args.url else start_server(args, slots)
        try:
            expect = expected_digit(url, png)
            if i == 0 and args.single_duration > 0:
                single = run("single client", url, png, 1, args.single_duration, expect)
                print(json.dumps(asdict(single)), flush=True)
            name = f"{args.clients} clients"
            if len(args.concurrency) > 1:
                name += f", concurrency {slots or 'per-core'}"
            concurrent.append(run(name, url, png, args.clients, args.duration, expect))
            print(json.dumps(asdict(concurrent[-1])), flush=True)
        finally:
            if proc is not None:
                stop_server(proc)

    targets = []
    if single is not None:
        p50 = single.latency_ms.get("p50", float("inf"))
        targets.append(
            {
                "name": "single-client p50 ms",
                "value": p50,
                "target": f"< {TARGET_SINGLE_P50_MS}",
                "met": p50 < TARGET_SINGLE_P50_MS,
            }
        )
    errors = sum(r.errors for r in concurrent)
    targets.append(
        {
            "name": f"errors with {args.clients} clients x {args.duration:g} s",
            "value": errors,
            "target": f"0 with >= {TARGET_CLIENTS} clients x >= {TARGET_DURATION_S:g} s",
            "met": errors == 0
            and args.clients >= TARGET_CLIENTS
            and args.duration >= TARGET_DURATION_S,
        }
    )
    report = {
        "machine": machine(),
        "payload": what,
        "payload_bytes": len(png),
        "server": {
            "url": args.url,
            "workers": args.workers,
            "model": args.model or "bundled",
            "concurrency": args.concurrency,
        },
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "note": "shared, noisy 2-core machine; clients and server share the cores",
        "runs": [asdict(r) for r in ([single] if single else []) + concurrent],
        "targets": targets,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0 if all(t["met"] for t in report["targets"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
