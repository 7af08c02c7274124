"""MNIST finding, verification, downloading and parsing; Kaggle CSV; the split; ``digitlab data``.

Everything runs against the real MNIST files (copied, re-packed or damaged in ``tmp_path``) and a
real HTTP server on 127.0.0.1. An autouse fixture points the user cache at ``tmp_path`` and the
download mirrors at a closed loopback port, so no test can touch the real cache or the internet.
"""

from __future__ import annotations

import csv
import gzip
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from digitlab.apps.cli import main
from digitlab.training import data, kaggle_csv
from digitlab.training.data import MNIST_FILES, DataError

IMAGE_HEADER = 16  # IDX: magic + 3 dimensions, 4 bytes each
LABEL_HEADER = 8  # IDX: magic + 1 dimension
CLOSED_LOOPBACK = "http://127.0.0.1:9/"  # discard port: nothing listens, connection refused


def _decompressed(folder: Path, name: str) -> bytes:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            raw = candidate.read_bytes()
            return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    raise FileNotFoundError(f"{name} not in {folder}")


@pytest.fixture(scope="session")
def raw_files(mnist_dir: Path) -> dict[str, bytes]:
    """Standard file name -> decompressed content of the real MNIST files."""
    return {spec.name: _decompressed(mnist_dir, spec.name) for spec in MNIST_FILES.values()}


@pytest.fixture(scope="session")
def gz_files(raw_files: dict[str, bytes]) -> dict[str, bytes]:
    """``name.gz`` -> gzip bytes, as a mirror serves them."""
    return {f"{name}.gz": gzip.compress(body, compresslevel=1) for name, body in raw_files.items()}


@pytest.fixture(scope="session")
def oracle(raw_files: dict[str, bytes]) -> dict[str, np.ndarray]:
    """The arrays, parsed here independently of digitlab.training.data (fixed IDX header sizes)."""
    out = {}
    for key, spec in MNIST_FILES.items():
        header = IMAGE_HEADER if spec.kind == "images" else LABEL_HEADER
        out[key] = np.frombuffer(raw_files[spec.name], np.uint8, offset=header).reshape(spec.shape)
    return out


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Empty cache in tmp_path, no $DIGITLAB_DATA, mirrors on a dead loopback port, no backoff."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("DIGITLAB_MNIST_MIRRORS", CLOSED_LOOPBACK)
    monkeypatch.delenv("DIGITLAB_DATA", raising=False)
    monkeypatch.setattr(data, "BACKOFF_SECONDS", 0.0)
    return tmp_path / "xdg-cache" / "digitlab" / "mnist"


def _assert_matches(mnist: data.MNIST, oracle: dict[str, np.ndarray]) -> None:
    for key, expected in oracle.items():
        got = getattr(mnist, key)
        assert got.shape == expected.shape
        assert got.dtype == (np.uint8 if expected.ndim == 3 else np.int64)
        np.testing.assert_array_equal(got, expected)


# --- IDX parsing and verification ---------------------------------------------------------------


def _write_gz(path: Path, content: bytes) -> Path:
    path.write_bytes(gzip.compress(content, compresslevel=1))
    return path


def test_truncated_images_named_with_sizes(tmp_path: Path, raw_files: dict[str, bytes]) -> None:
    spec = MNIST_FILES["train_images"]
    path = _write_gz(tmp_path / f"{spec.name}.gz", raw_files[spec.name][: IMAGE_HEADER + 1000])
    with pytest.raises(DataError) as err:
        data.read_idx(path, spec)
    assert f"{spec.name}.gz: truncated: header says 60000x28x28 = 47040000 bytes of pixels" in str(
        err.value
    )
    assert "file has 1000" in str(err.value)


def test_wrong_magic(tmp_path: Path, raw_files: dict[str, bytes]) -> None:
    labels = raw_files["t10k-labels-idx1-ubyte"]
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(labels)  # a labels file where images are expected
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: wrong magic number 0x00000801"):
        data.read_idx(path, MNIST_FILES["test_images"])


def test_wrong_dimensions(tmp_path: Path, raw_files: dict[str, bytes]) -> None:
    content = bytearray(raw_files["t10k-images-idx3-ubyte"])
    content[12:16] = (27).to_bytes(4, "big")  # columns: 28 -> 27
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(bytes(content))
    with pytest.raises(DataError) as err:
        data.read_idx(path, MNIST_FILES["test_images"])
    assert "wrong dimensions: header says 10000x28x27, expected 10000x28x28" in str(err.value)


def test_wrong_hash_one_label_changed(tmp_path: Path, raw_files: dict[str, bytes]) -> None:
    content = bytearray(raw_files["t10k-labels-idx1-ubyte"])
    content[LABEL_HEADER] = (content[LABEL_HEADER] + 1) % 10  # still a valid digit
    path = _write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", bytes(content))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: SHA-256 mismatch"):
        data.read_idx(path, MNIST_FILES["test_labels"])


def test_trailing_bytes(tmp_path: Path, raw_files: dict[str, bytes]) -> None:
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(raw_files["t10k-labels-idx1-ubyte"] + b"\0\0\0")
    with pytest.raises(DataError, match=r"3 unexpected bytes after the 10000 bytes of labels"):
        data.read_idx(path, MNIST_FILES["test_labels"])


def test_bad_gzip(tmp_path: Path, gz_files: dict[str, bytes]) -> None:
    spec = MNIST_FILES["test_labels"]
    whole = gz_files[f"{spec.name}.gz"]
    cut = tmp_path / "cut" / f"{spec.name}.gz"
    cut.parent.mkdir()
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"cut/t10k-labels-idx1-ubyte.gz: bad gzip: truncated"):
        data.read_idx(cut, spec)
    garbage = tmp_path / f"{spec.name}.gz"
    garbage.write_bytes(b"\x1f\x8b" + b"\xff" * 64)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: bad gzip"):
        data.read_idx(garbage, spec)
    not_gzip = tmp_path / "plain" / f"{spec.name}.gz"
    not_gzip.parent.mkdir()
    not_gzip.write_bytes(b"hello, not gzip")
    with pytest.raises(DataError, match=r"not a gzip file"):
        data.read_idx(not_gzip, spec)


# --- layouts and places -----------------------------------------------------------------------


def test_gz_folder(mnist_dir: Path, oracle: dict[str, np.ndarray]) -> None:
    mnist = data.load_mnist(mnist_dir, download=False)
    _assert_matches(mnist, oracle)
    assert str(mnist_dir) in mnist.source and "--data-dir" in mnist.source
    mnist.train_images[0, 0, 0] = 1  # callers get their own writeable arrays
    again = data.load_mnist(mnist_dir, download=False)
    assert again.train_images[0, 0, 0] == oracle["train_images"][0, 0, 0]


@pytest.mark.parametrize(
    ("subfolder", "spelling", "compressed", "layout"),
    [
        ("", "standard", False, "IDX files, uncompressed"),
        ("", "dotted", False, "IDX files, uncompressed"),
        ("MNIST/raw", "standard", False, "torchvision layout"),
        ("raw", "dotted", True, "torchvision layout, IDX files, gzip"),
    ],
)
def test_idx_layouts(
    tmp_path: Path,
    raw_files: dict[str, bytes],
    gz_files: dict[str, bytes],
    oracle: dict[str, np.ndarray],
    subfolder: str,
    spelling: str,
    compressed: bool,
    layout: str,
) -> None:
    root = tmp_path / "data"
    folder = root / subfolder
    folder.mkdir(parents=True)
    for name, body in raw_files.items():
        filename = name.replace("-idx", ".idx") if spelling == "dotted" else name
        if compressed:
            (folder / f"{filename}.gz").write_bytes(gz_files[f"{name}.gz"])
        else:
            (folder / filename).write_bytes(body)
    mnist = data.load_mnist(root, download=False)
    _assert_matches(mnist, oracle)
    assert layout in mnist.source and str(root) in mnist.source


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def test_keras_npz(tmp_path: Path, oracle: dict[str, np.ndarray]) -> None:
    keras = {spec.npz_key: oracle[key] for key, spec in MNIST_FILES.items()}
    _write_npz(tmp_path / "mnist.npz", keras)
    mnist = data.load_mnist(tmp_path, download=False)
    _assert_matches(mnist, oracle)
    assert "mnist.npz" in mnist.source
    # The .npz file itself is accepted as data_dir too.
    assert "Keras" in data.load_mnist(tmp_path / "mnist.npz", download=False).source


def test_keras_npz_problems_named(tmp_path: Path, oracle: dict[str, np.ndarray]) -> None:
    y_test = oracle["test_labels"].copy()
    y_test[0] = (y_test[0] + 1) % 10
    bad = {
        "x_train": oracle["train_images"][:10],  # wrong shape
        "y_train": oracle["train_labels"].astype(np.int64) + 1,  # 10 is not a digit
        "x_test": oracle["test_images"].astype(np.float32),  # wrong dtype
        "y_test": y_test,  # one label changed: hash
    }
    _write_npz(tmp_path / "mnist.npz", bad)
    report = data.inspect_mnist(tmp_path, download=False)
    problems = {c.name: c.problem for c in report.checks}
    assert "wrong shape 10x28x28, expected 60000x28x28" in problems["mnist.npz:x_train"]
    assert "labels range 1..10, expected 0..9" in problems["mnist.npz:y_train"]
    assert "dtype float32, expected uint8" in problems["mnist.npz:x_test"]
    assert "SHA-256 mismatch" in problems["mnist.npz:y_test"]
    assert report.data is None
    _write_npz(tmp_path / "mnist.npz", {"x_train": oracle["train_images"]})
    with pytest.raises(DataError, match=r"mnist.npz:y_train: missing"):
        data.load_mnist(tmp_path, download=False)
    (tmp_path / "mnist.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=r"mnist.npz: not a readable .npz file"):
        data.load_mnist(tmp_path, download=False)


def _link_real_files(folder: Path, mnist_dir: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for spec in MNIST_FILES.values():
        for name in (f"{spec.name}.gz", spec.name):
            if (mnist_dir / name).is_file():
                (folder / name).symlink_to(mnist_dir / name)
                break


def test_cache_dir_honours_xdg(
    isolated: Path, mnist_dir: Path, oracle: dict[str, np.ndarray]
) -> None:
    assert data.cache_dir() == isolated
    _link_real_files(isolated, mnist_dir)
    mnist = data.load_mnist(download=False)
    _assert_matches(mnist, oracle)
    assert str(isolated) in mnist.source and "cache" in mnist.source


def test_env_data_dir_wins_over_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, isolated: Path, mnist_dir: Path
) -> None:
    _link_real_files(isolated, mnist_dir)
    env_dir = tmp_path / "env-data"
    _link_real_files(env_dir, mnist_dir)
    monkeypatch.setenv("DIGITLAB_DATA", str(env_dir))
    assert data.locate_mnist(download=False).root == env_dir
    assert "$DIGITLAB_DATA" in data.load_mnist(download=False).source
    # An explicit data_dir wins over the environment.
    assert data.locate_mnist(isolated, download=False).origin == "found via --data-dir"


def test_incomplete_folder_names_missing_files(tmp_path: Path, mnist_dir: Path) -> None:
    _link_real_files(tmp_path / "some", mnist_dir)
    for path in (tmp_path / "some").glob("t10k-*"):
        path.unlink()
    with pytest.raises(DataError) as err:
        data.load_mnist(tmp_path / "some", download=False)
    assert "incomplete" in str(err.value)
    assert "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte" in str(err.value)


def test_not_found_names_every_place(tmp_path: Path, isolated: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as err:
        data.load_mnist(empty, download=False)
    message = str(err.value)
    assert f"--data-dir {empty}: no MNIST files there" in message
    assert f"cache {isolated}: does not exist" in message
    assert "download: disabled" in message


# --- downloading from a loopback mirror ---------------------------------------------------------


class _MirrorServer(ThreadingHTTPServer):
    daemon_threads = True
    files: dict[str, bytes]
    requests: list[str]


class _MirrorHandler(BaseHTTPRequestHandler):
    """Routes: /good/ serves the files, /missing/ 404s, /trunc/ serves half a file honestly,
    /cut/ announces the whole file but hangs up halfway, /flaky/ fails with 503 once per file."""

    server: _MirrorServer

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        _, route, name = self.path.split("/", 2)
        body = self.server.files.get(name)
        if body is None or route == "missing":
            self.send_error(404)
            return
        if route == "flaky" and self.server.requests.count(self.path) == 1:
            self.send_error(503)
            return
        length = len(body)
        if route == "trunc":
            body = body[: length // 2]
            length = len(body)
        elif route == "cut":
            body = body[: length // 2]
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def mirror_server(gz_files: dict[str, bytes]) -> Iterator[_MirrorServer]:
    server = _MirrorServer(("127.0.0.1", 0), _MirrorHandler)
    server.files = gz_files
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def mirror(mirror_server: _MirrorServer, monkeypatch: pytest.MonkeyPatch):
    """``use(*routes)`` points $DIGITLAB_MNIST_MIRRORS at those routes; returns the request log."""
    mirror_server.requests.clear()
    base = f"http://127.0.0.1:{mirror_server.server_address[1]}"

    def use(*routes: str) -> list[str]:
        monkeypatch.setenv("DIGITLAB_MNIST_MIRRORS", ",".join(f"{base}/{r}/" for r in routes))
        return mirror_server.requests

    return use


def test_download_into_cache(mirror, isolated: Path, oracle: dict[str, np.ndarray]) -> None:
    requests = mirror("good")
    mnist = data.load_mnist()
    _assert_matches(mnist, oracle)
    assert "downloaded from http://127.0.0.1" in mnist.source
    expected = sorted(f"{spec.name}.gz" for spec in MNIST_FILES.values())
    assert sorted(p.name for p in isolated.iterdir()) == expected  # no temp files left
    assert len(requests) == len(MNIST_FILES)
    # Next time the cache is used, without the network.
    requests.clear()
    assert "found via cache" in data.load_mnist(download=False).source
    assert requests == []


def test_download_completes_partial_cache(mirror, isolated: Path, mnist_dir: Path) -> None:
    _link_real_files(isolated, mnist_dir)
    for path in isolated.glob("t10k-*"):
        path.unlink()
    requests = mirror("good")
    mnist = data.load_mnist()
    assert len(mnist.test_labels) == data.TEST_COUNT
    assert sorted(requests) == [
        "/good/t10k-images-idx3-ubyte.gz",
        "/good/t10k-labels-idx1-ubyte.gz",
    ]


def test_download_skips_404_mirror(mirror, tmp_path: Path, raw_files: dict[str, bytes]) -> None:
    requests = mirror("missing", "good")
    spec = MNIST_FILES["test_labels"]
    url = data.download_file(spec, tmp_path, data.mirrors())
    assert url.endswith(f"/good/{spec.name}.gz")
    assert requests == [f"/missing/{spec.name}.gz", f"/good/{spec.name}.gz"]  # 404: no retry
    assert gzip.decompress((tmp_path / f"{spec.name}.gz").read_bytes()) == raw_files[spec.name]


def test_download_retries_transient_error(mirror, tmp_path: Path) -> None:
    requests = mirror("flaky")
    spec = MNIST_FILES["test_labels"]
    data.download_file(spec, tmp_path, data.mirrors())
    assert requests == [f"/flaky/{spec.name}.gz"] * 2
    assert [p.name for p in tmp_path.iterdir()] == [f"{spec.name}.gz"]


def test_truncated_download_leaves_nothing(mirror, isolated: Path) -> None:
    requests = mirror("trunc")
    with pytest.raises(DataError) as err:
        data.load_mnist()
    message = str(err.value)
    assert "could not download train-images-idx3-ubyte.gz" in message
    assert "/trunc/train-images-idx3-ubyte.gz: bad gzip: truncated" in message
    assert not isolated.exists()  # nothing, not even the empty folder
    assert len(requests) == 1  # a bad file is not fetched again from the same mirror


def test_interrupted_download_retried_then_fails_cleanly(mirror, tmp_path: Path) -> None:
    requests = mirror("cut")
    spec = MNIST_FILES["test_labels"]
    with pytest.raises(DataError, match=r"interrupted: got \d+ of \d+ bytes"):
        data.download_file(spec, tmp_path, data.mirrors())
    assert len(requests) == data.DOWNLOAD_ATTEMPTS
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_download_leaves_nothing(
    mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror("good")
    real_fetch = data._fetch

    def fetch_then_interrupt(url: str, out) -> None:
        real_fetch(url, out)
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "_fetch", fetch_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        data.download_file(MNIST_FILES["test_labels"], tmp_path, data.mirrors())
    assert list(tmp_path.iterdir()) == []


def test_mirrors_env_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITLAB_MNIST_MIRRORS", " http://a/x , http://b/y/ ,")
    assert data.mirrors() == ["http://a/x/", "http://b/y/"]
    monkeypatch.delenv("DIGITLAB_MNIST_MIRRORS")
    assert data.mirrors() == list(data.DEFAULT_MIRRORS)


# --- train/validation split -------------------------------------------------------------------


def test_split_indices_deterministic_and_disjoint() -> None:
    n, val_size = 1000, 100
    train, val = data.split_indices(n, val_size, seed=3)
    again_train, again_val = data.split_indices(n, val_size, seed=3)
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(val, again_val)
    assert train.dtype == val.dtype == np.int64
    assert len(val) == val_size and len(train) == n - val_size
    assert not set(train.tolist()) & set(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(n))
    expected_val = np.random.default_rng(3).permutation(n)[:val_size]
    assert set(val.tolist()) == set(expected_val.tolist())
    _, other_val = data.split_indices(n, val_size, seed=4)
    assert set(other_val.tolist()) != set(val.tolist())


def test_split_indices_edges() -> None:
    train, val = data.split_indices(10, 0)
    assert val.size == 0 and train.tolist() == list(range(10))
    with pytest.raises(DataError, match=r"validation size 10 leaves no training data"):
        data.split_indices(10, 10)
    with pytest.raises(DataError, match=r"must be 0 or more, got -1"):
        data.split_indices(10, -1)
    with pytest.raises(DataError, match=r"val_size must be an integer"):
        data.split_indices(10, 0.5)  # type: ignore[arg-type]
    train, val = data.split_indices(np.int64(10), np.int32(2))
    assert len(val) == 2


# --- Kaggle CSV -------------------------------------------------------------------------------

HEADER_TRAIN = ["label", *(f"pixel{i}" for i in range(784))]


def _write_csv(path: Path, header: list[str], rows: list[list[object]], newline: str = "\n"):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator=newline)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def small_train_rows(oracle: dict[str, np.ndarray]) -> list[list[object]]:
    images = oracle["train_images"][:5].reshape(5, -1)
    return [[int(y), *map(int, x)] for y, x in zip(oracle["train_labels"][:5], images, strict=True)]


def test_kaggle_csv_reads_csv_module_output(
    tmp_path: Path, small_train_rows: list[list[object]], oracle: dict[str, np.ndarray]
) -> None:
    path = _write_csv(tmp_path / "train.csv", HEADER_TRAIN, small_train_rows, newline="\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as Excel saves it
    images, labels = kaggle_csv.load_kaggle_csv(path)
    assert images.dtype == np.uint8 and images.shape == (5, 28, 28)
    assert labels is not None and labels.dtype == np.int64
    np.testing.assert_array_equal(images, oracle["train_images"][:5])
    np.testing.assert_array_equal(labels, oracle["train_labels"][:5])


def test_kaggle_csv_round_trip(tmp_path: Path, oracle: dict[str, np.ndarray]) -> None:
    count = 300
    train = tmp_path / "train.csv"
    kaggle_csv.write_kaggle_csv(
        train, oracle["train_images"][:count], oracle["train_labels"][:count]
    )
    lines = train.read_text().splitlines()
    assert lines[0] == ",".join(HEADER_TRAIN) and len(lines) == count + 1
    first = [int(v) for v in lines[1].split(",")]
    assert first[0] == oracle["train_labels"][0]
    assert first[1:] == oracle["train_images"][0].reshape(-1).tolist()
    images, labels = kaggle_csv.load_kaggle_csv(train)
    np.testing.assert_array_equal(images, oracle["train_images"][:count])
    np.testing.assert_array_equal(labels, oracle["train_labels"][:count])

    test = tmp_path / "test.csv"
    kaggle_csv.write_kaggle_csv(test, oracle["test_images"][:count].reshape(count, -1))
    assert test.read_text().startswith("pixel0,pixel1,")
    images, labels = kaggle_csv.load_kaggle_csv(test)
    assert labels is None
    np.testing.assert_array_equal(images, oracle["test_images"][:count])
    with pytest.raises(DataError, match=r"header starts with 'pixel0', expected 'label'"):
        kaggle_csv.load_kaggle_csv(test, labelled=True)
    with pytest.raises(DataError, match=r"has a 'label' column, expected an unlabelled"):
        kaggle_csv.load_kaggle_csv(train, labelled=False)


def test_kaggle_csv_bad_header(tmp_path: Path, small_train_rows: list[list[object]]) -> None:
    header = [*HEADER_TRAIN[:-1], "pixelX"]
    path = _write_csv(tmp_path / "train.csv", header, small_train_rows)
    with pytest.raises(DataError, match=r"header column 785 is 'pixelX', expected 'pixel783'"):
        kaggle_csv.load_kaggle_csv(path)
    path = _write_csv(tmp_path / "short.csv", HEADER_TRAIN[:100], small_train_rows)
    with pytest.raises(DataError, match=r"short.csv: header has 100 columns, expected 785"):
        kaggle_csv.load_kaggle_csv(path)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty file"):
        kaggle_csv.load_kaggle_csv(tmp_path / "empty.csv")
    _write_csv(tmp_path / "no_rows.csv", HEADER_TRAIN, [])
    with pytest.raises(DataError, match=r"no data rows"):
        kaggle_csv.load_kaggle_csv(tmp_path / "no_rows.csv")


@pytest.mark.parametrize(
    ("row", "column", "value", "problem"),
    [
        (
            3,
            11,
            "abc",
            r"data row 3 \(line 4 of the file\), column pixel10: 'abc' is not an integer",
        ),
        (
            2,
            6,
            "256",
            r"data row 2 \(line 3 of the file\), column pixel5: 256 is out of range 0-255",
        ),
        (5, 0, "10", r"data row 5 \(line 6 of the file\), column label: 10 is out of range 0-9"),
        (1, 784, "-1", r"data row 1 \(line 2 of the file\), column pixel783: '-1' is not an int"),
        (4, 400, "", r"data row 4 \(line 5 of the file\), column pixel399: missing value"),
        (2, 0, "", r"data row 2 \(line 3 of the file\), column label: missing value"),
    ],
)
def test_kaggle_csv_bad_value_named(
    tmp_path: Path,
    small_train_rows: list[list[object]],
    row: int,
    column: int,
    value: str,
    problem: str,
) -> None:
    small_train_rows[row - 1][column] = value
    path = _write_csv(tmp_path / "train.csv", HEADER_TRAIN, small_train_rows)
    with pytest.raises(DataError, match=rf"train.csv: {problem}"):
        kaggle_csv.load_kaggle_csv(path)


def test_kaggle_csv_wrong_column_count(
    tmp_path: Path, small_train_rows: list[list[object]]
) -> None:
    small_train_rows[2] = small_train_rows[2][:-1]
    path = _write_csv(tmp_path / "train.csv", HEADER_TRAIN, small_train_rows)
    with pytest.raises(DataError, match=r"data row 3 \(line 4 of the file\): has 784 columns, exp"):
        kaggle_csv.load_kaggle_csv(path)


# --- digitlab data ----------------------------------------------------------------------------


def test_cli_data_success(
    mnist_dir: Path, oracle: dict[str, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "--data-dir", str(mnist_dir), "--no-download"]) == 0
    out = capsys.readouterr().out
    assert str(mnist_dir) in out
    assert sum(" OK " in line for line in out.splitlines()) == len(MNIST_FILES)
    assert "60,000 train, 10,000 test" in out
    ones = Counter(oracle["train_labels"].tolist())[1]
    assert any(line.split()[:2] == ["1", f"{ones:,}"] for line in out.splitlines())

    assert main(["data", "--data-dir", str(mnist_dir), "--no-download", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["ok"] is True and info["layout"] == "idx"
    assert info["counts"] == {"train": 60000, "test": 10000}
    expected = np.bincount(oracle["test_labels"], minlength=10).tolist()
    assert info["label_histogram"]["test"] == expected


def test_cli_data_missing(
    tmp_path: Path, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "--data-dir", str(empty), "--no-download"]) == 2
    err = capsys.readouterr().err
    assert "digitlab data: error: MNIST not found" in err
    assert str(empty) in err and str(isolated) in err and "download: disabled" in err


def test_cli_data_corrupt_file(
    tmp_path: Path, mnist_dir: Path, raw_files: dict[str, bytes], capsys
) -> None:
    folder = tmp_path / "mixed"
    _link_real_files(folder, mnist_dir)
    for path in folder.glob("t10k-labels*"):
        path.unlink()
    content = bytearray(raw_files["t10k-labels-idx1-ubyte"])
    content[-1] = (content[-1] + 1) % 10
    (folder / "t10k-labels-idx1-ubyte").write_bytes(bytes(content))
    assert main(["data", "--data-dir", str(folder), "--no-download"]) == 2
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert sum(" OK " in line for line in lines) == len(MNIST_FILES) - 1
    assert any("t10k-labels-idx1-ubyte" in line and "BAD" in line for line in lines)
    assert "1 of 4 files failed verification" in captured.err
    assert "t10k-labels-idx1-ubyte: SHA-256 mismatch" in captured.err
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: SHA-256 mismatch"):
        data.load_mnist(folder, download=False)
