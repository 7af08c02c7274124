"""The README's deployment promise, for real: the wheel, installed with ``--no-deps`` next to
numpy, pillow and onnxruntime (and fastapi, uvicorn, python-multipart to serve) in a fresh venv
without torch, runs ``digitlab predict`` and ``digitlab serve``.

Builds the sdist and wheel from this checkout with ``python -m build``, checks what the wheel
holds, installs from PyPI into a new venv, and prints the sizes (wheel, sdist, venv). Needs the
network (PyPI), so it is marked slow: ``pytest -m slow tests/test_wheel.py -s`` shows the sizes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

pytestmark = pytest.mark.slow  # build + venv + PyPI installs: measured 75 s here

ROOT = Path(__file__).resolve().parent.parent
WEB_ASSETS = sorted(p.name for p in (ROOT / "src/digitlab/apps/web").iterdir() if p.is_file())
WEIGHTS = ("default.pt", "default.onnx", "ensemble.pt", "cut_scorer.pt", "cut_scorer.onnx")
# What the README tells a torch-free machine to install, besides the wheel.
RUNTIME = ("numpy", "pillow", "onnxruntime")
SERVE = ("fastapi", "uvicorn", "python-multipart")
SERVER_START_S = 60
# MNIST in any of the layouts training/data.py reads; none of it belongs in a wheel.
DATA_MARKERS = ("ubyte", "mnist.npz", ".csv")


def _run(cmd: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _copy_checkout(dest: Path) -> Path:
    """The checkout's files (tracked and new, not ignored) in ``dest``, so that building leaves
    no egg-info or build folder in the working tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:  # not a git checkout (an unpacked sdist): copy all but the junk
        ignore = shutil.ignore_patterns("*.egg-info", "build", "dist", "__pycache__", ".venv*")
        shutil.copytree(ROOT, dest, ignore=ignore)
        return dest
    for name in filter(None, listed.stdout.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _tree_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _seven(path: Path) -> Path:
    """A hand-drawn-looking 7: dark strokes on white paper, larger than MNIST."""
    img = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(img).line([(50, 45), (150, 45), (95, 165)], fill=0, width=16)
    img.save(path)
    return path


def _multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = "digitlab-wheel-test"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="{filename}"\r\nContent-Type: image/png\r\n\r\n'
    ).encode()
    body += data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """sdist and wheel built from this checkout."""
    work = tmp_path_factory.mktemp("build")
    src = _copy_checkout(work / "src")
    out = work / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(src)])
    (wheel,) = out.glob("digitlab-*.whl")
    (sdist,) = out.glob("digitlab-*.tar.gz")
    print(f"\nwheel {wheel.name}: {wheel.stat().st_size / 1e6:.2f} MB")
    print(f"sdist {sdist.name}: {sdist.stat().st_size / 1e6:.2f} MB")
    return {"wheel": wheel, "sdist": sdist}


def test_wheel_holds_the_models_and_the_page_and_nothing_else(dist: dict[str, Path]) -> None:
    names = zipfile.ZipFile(dist["wheel"]).namelist()
    for weight in WEIGHTS:
        assert f"digitlab/weights/{weight}" in names, weight
    web = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("digitlab/apps/web/"))
    assert web == WEB_ASSETS
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"digitlab", dist["wheel"].name.split("-py3")[0] + ".dist-info"}
    assert not [n for n in names if "/tests/" in n or n.startswith(("tests/", "benchmarks/"))]
    assert not [n for n in names if any(m in n.lower() for m in DATA_MARKERS)]


def test_predict_and_serve_without_torch(dist: dict[str, Path], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    py, pip = bin_dir / "python", [str(bin_dir / "python"), "-m", "pip", "--quiet"]
    pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run([*pip, "install", "--no-deps", str(dist["wheel"])], env=pip_env)
    _run([*pip, "install", *RUNTIME, *SERVE], env=pip_env)
    # Clean environment: nothing from this interpreter's site-packages or PYTHONPATH leaks in.
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    probe = subprocess.run(
        [str(py), "-c", "import torch"], capture_output=True, text=True, env=env, check=False
    )
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    where = _run([str(py), "-c", "import digitlab; print(digitlab.__file__)"], env=env)
    assert str(venv) in where.stdout  # the installed wheel, not this checkout
    print(f"\nvenv without torch: {_tree_mb(venv):.0f} MB")

    # Number reading scores its cuts with the bundled cut scorer's ONNX export here.
    code = (
        "import digitlab; r = digitlab.load_model(); s = r.cut_scorer(); "
        "print(s is not r, s.info.backend)"
    )
    assert _run([str(py), "-c", code], env=env).stdout.split() == ["True", "onnx"]

    image = _seven(tmp_path / "seven.png")
    out = _run([str(bin_dir / "digitlab"), "predict", str(image), "--format", "json"], env=env)
    (result,) = json.loads(out.stdout)
    assert result["digit"] == 7 and result["error"] is None

    port = _free_port()
    server = subprocess.Popen(
        [str(bin_dir / "digitlab"), "serve", "--port", str(port), "--no-access-log"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            assert server.poll() is None, server.communicate()[0][-3000:]
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, "digitlab serve did not come up"
                time.sleep(0.5)
        body, content_type = _multipart("file", "seven.png", image.read_bytes())
        request = urllib.request.Request(
            f"{base}/api/predict", data=body, headers={"Content-Type": content_type}
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            assert r.status == 200
            answer = json.loads(r.read())
        assert answer["digit"] == 7
        with urllib.request.urlopen(f"{base}/", timeout=10) as r:  # the drawing page
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        server.terminate()
        try:
            server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
