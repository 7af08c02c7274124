"""MNIST data: find, download, verify and parse.

(Kaggle "Digit Recognizer" CSVs are :mod:`digitlab.training.kaggle_csv`.)

Where MNIST is looked for, in order (:func:`locate_mnist`):

1. the ``data_dir`` argument (CLI ``--data-dir``), or, when none is given, ``$DIGITLAB_DATA``;
2. the user cache, ``$XDG_CACHE_HOME/digitlab/mnist`` (default ``~/.cache/digitlab/mnist``);
3. a download from the public mirrors (``$DIGITLAB_MNIST_MIRRORS``, comma-separated base URLs,
   overrides :data:`DEFAULT_MIRRORS`) into the cache, with retries and exponential backoff.
   Each file is fetched into a temp file in the cache folder, verified, then renamed into place
   (``os.replace``), so a failed or interrupted download never leaves a partial file.

Layouts accepted in a folder (the first complete one wins):

* the four IDX files, ``.gz`` or uncompressed, with the standard names
  (``train-images-idx3-ubyte``) or the ``train-images.idx3-ubyte`` spelling;
* torchvision's layout: the same files under ``raw/`` or ``MNIST/raw/``;
* Keras's ``mnist.npz`` (arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``).

Verification. IDX files are checked for magic number, dimensions and length, then the SHA-256
of their decompressed content must equal the published hash (:data:`MNIST_FILES`). For
``mnist.npz`` the shapes, dtypes (images uint8, labels any integer type) and label range are
checked, then the SHA-256 of each array's C-order uint8 bytes. Those array hashes were computed
from the official IDX files: they are the SHA-256 of each IDX file's content after its header
(16 bytes for images, 8 for labels), e.g.
``hashlib.sha256(gzip.open("train-images-idx3-ubyte.gz").read()[16:]).hexdigest()``, since a
Keras ``mnist.npz`` holds the same bytes in the same order. Every problem is a
:class:`~digitlab.core.errors.DataError` whose message names the file and what is wrong.

One module (~690 lines) because finding, downloading, verifying and parsing MNIST share the
file specs (names, sizes, hashes) and the error wording; the Kaggle CSV lives in kaggle_csv.py.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import operator
import os
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from math import prod
from pathlib import Path

import numpy as np

from digitlab import __version__
from digitlab.core.constants import IMAGE_SIDE, NUM_CLASSES
from digitlab.core.errors import DataError
from digitlab.core.io import atomic_write

logger = logging.getLogger(__name__)

# --- MNIST geometry and the published files -------------------------------------------------

MAX_PIXEL = 255  # uint8
TRAIN_COUNT = 60_000
TEST_COUNT = 10_000

# IDX header: 2 zero bytes, a type code, the number of dimensions, then one big-endian uint32
# per dimension. The magic number is the first 4 bytes read as a big-endian int.
IDX_UNSIGNED_BYTE = 0x08
IDX_MAGIC_BYTES = 4
IDX_DIM_BYTES = 4
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class IdxSpec:
    """One of the four official MNIST IDX files."""

    name: str  # standard, uncompressed file name
    shape: tuple[int, ...]
    sha256: str  # of the decompressed file content (header included)
    payload_sha256: str  # of the data after the header (what a Keras mnist.npz array holds)
    npz_key: str  # the array's name in Keras's mnist.npz

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def magic(self) -> int:
        return (IDX_UNSIGNED_BYTE << 8) | self.ndim

    @property
    def header_size(self) -> int:
        return IDX_MAGIC_BYTES + IDX_DIM_BYTES * self.ndim

    @property
    def kind(self) -> str:
        return "images" if self.ndim == 3 else "labels"

    @property
    def alt_name(self) -> str:
        """The ``train-images.idx3-ubyte`` spelling some copies use."""
        return self.name.replace("-idx", ".idx")


# Keyed by the MNIST dataclass field each file fills.
MNIST_FILES: dict[str, IdxSpec] = {
    "train_images": IdxSpec(
        "train-images-idx3-ubyte",
        (TRAIN_COUNT, IMAGE_SIDE, IMAGE_SIDE),
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        "x_train",
    ),
    "train_labels": IdxSpec(
        "train-labels-idx1-ubyte",
        (TRAIN_COUNT,),
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
        "y_train",
    ),
    "test_images": IdxSpec(
        "t10k-images-idx3-ubyte",
        (TEST_COUNT, IMAGE_SIDE, IMAGE_SIDE),
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        "x_test",
    ),
    "test_labels": IdxSpec(
        "t10k-labels-idx1-ubyte",
        (TEST_COUNT,),
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
        "y_test",
    ),
}
NPZ_NAME = "mnist.npz"

# --- where to look, where to download from ---------------------------------------------------

ENV_DATA = "DIGITLAB_DATA"
ENV_MIRRORS = "DIGITLAB_MNIST_MIRRORS"
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
DOWNLOAD_ATTEMPTS = 3  # per mirror, for transient failures (connection, timeout, 5xx)
BACKOFF_SECONDS = 1.0  # the wait before retry k is BACKOFF_SECONDS * 2 ** (k - 1)
DOWNLOAD_TIMEOUT_SECONDS = 30.0
DOWNLOAD_CHUNK_BYTES = 1 << 20
HTTP_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})

LAYOUT_IDX = "idx"
LAYOUT_TORCHVISION = "torchvision"
LAYOUT_NPZ = "keras-npz"


@dataclass
class MNIST:
    """The MNIST arrays: images uint8 (N, 28, 28) with ink = 255, labels int64 (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str  # where the data was found: path, layout and how it was found


@dataclass
class Location:
    """A complete copy of MNIST on disk."""

    root: Path  # the folder that holds the files (or the .npz file's folder)
    layout: str  # LAYOUT_IDX | LAYOUT_TORCHVISION | LAYOUT_NPZ
    files: dict[str, Path]  # MNIST field -> file (all four point at mnist.npz for keras-npz)
    origin: str = ""  # how it was found: "--data-dir", "$DIGITLAB_DATA", "cache", ...

    def describe(self) -> str:
        """Human-readable ``path (layout; origin)``."""
        if self.layout == LAYOUT_NPZ:
            what = f"Keras {NPZ_NAME}"
        else:
            gz = sum(p.suffix == ".gz" for p in self.files.values())
            packing = {0: "uncompressed", len(self.files): "gzip"}.get(gz, "mixed gzip/raw")
            what = f"IDX files, {packing}"
            if self.layout == LAYOUT_TORCHVISION:
                what = f"torchvision layout, {what}"
        origin = f"; {self.origin}" if self.origin else ""
        return f"{self.root} ({what}{origin})"


@dataclass
class FileCheck:
    """The verification result of one file (or one array of an .npz)."""

    name: str  # file name, or "mnist.npz:x_train"
    path: Path
    problem: str | None = None  # None = verified OK
    shape: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class DataReport:
    """What :func:`inspect_mnist` found: the location, per-file checks and (if all OK) data."""

    location: Location
    checks: list[FileCheck] = field(default_factory=list)
    data: MNIST | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


# --- reading and verifying --------------------------------------------------------------------


def _fmt_shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


def _read_file(path: Path, where: str) -> bytes:
    """The file's content, gunzipped when it is gzip (by content, not by name)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{where}: cannot read: {exc.strerror or exc}") from exc
    if raw[: len(GZIP_MAGIC)] != GZIP_MAGIC:
        if path.suffix == ".gz":
            raise DataError(f"{where}: not a gzip file (starts with {raw[:4].hex() or 'nothing'})")
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as exc:
        raise DataError(f"{where}: bad gzip: truncated ({exc})") from exc
    except (OSError, zlib.error) as exc:
        raise DataError(f"{where}: bad gzip: {exc}") from exc


def parse_idx(data: bytes, spec: IdxSpec, where: str) -> np.ndarray:
    """Check an IDX file's header, length and SHA-256 against ``spec``; return its array.

    The array is a read-only view of ``data`` (uint8, ``spec.shape``). ``where`` names the file
    in error messages.
    """
    if len(data) < IDX_MAGIC_BYTES:
        raise DataError(f"{where}: truncated: {len(data)} bytes, shorter than an IDX header")
    magic = int.from_bytes(data[:IDX_MAGIC_BYTES], "big")
    if magic != spec.magic:
        raise DataError(
            f"{where}: wrong magic number 0x{magic:08X}, expected 0x{spec.magic:08X} "
            f"(IDX unsigned bytes, {spec.ndim} dimension(s)): not an MNIST {spec.kind} file"
        )
    if len(data) < spec.header_size:
        raise DataError(
            f"{where}: truncated: {len(data)} bytes, the IDX header alone is {spec.header_size}"
        )
    dims = tuple(
        int(d) for d in np.frombuffer(data, ">u4", count=spec.ndim, offset=IDX_MAGIC_BYTES)
    )
    if dims != spec.shape:
        raise DataError(
            f"{where}: wrong dimensions: header says {_fmt_shape(dims)}, "
            f"expected {_fmt_shape(spec.shape)}"
        )
    need = prod(dims)
    have = len(data) - spec.header_size
    unit = "pixels" if spec.kind == "images" else "labels"
    if have < need:
        raise DataError(
            f"{where}: truncated: header says {_fmt_shape(dims)} = {need} bytes of {unit}, "
            f"file has {have}"
        )
    if have > need:
        raise DataError(
            f"{where}: {have - need} unexpected bytes after the {need} bytes of {unit} "
            f"the header announces"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise DataError(
            f"{where}: SHA-256 mismatch: content hashes to {digest}, the published "
            f"{spec.name} is {spec.sha256} (corrupt copy or not the official MNIST)"
        )
    return np.frombuffer(data, np.uint8, count=need, offset=spec.header_size).reshape(dims)


def read_idx(path: str | os.PathLike, spec: IdxSpec) -> np.ndarray:
    """Read and verify one MNIST IDX file (``.gz`` or uncompressed); see :func:`parse_idx`."""
    path = Path(path)
    return parse_idx(_read_file(path, str(path)), spec, str(path))


def _check_npz_array(where: str, array: np.ndarray, spec: IdxSpec) -> np.ndarray:
    """Validate one Keras array against ``spec``; return it as C-contiguous uint8."""
    if array.shape != spec.shape:
        raise DataError(
            f"{where}: wrong shape {_fmt_shape(array.shape)}, expected {_fmt_shape(spec.shape)}"
        )
    if spec.kind == "images":
        if array.dtype != np.uint8:
            raise DataError(f"{where}: dtype {array.dtype}, expected uint8 pixels")
    else:
        if not np.issubdtype(array.dtype, np.integer):
            raise DataError(f"{where}: dtype {array.dtype}, expected integer labels")
        low, high = int(array.min()), int(array.max())
        if low < 0 or high >= NUM_CLASSES:
            raise DataError(f"{where}: labels range {low}..{high}, expected 0..{NUM_CLASSES - 1}")
    array = np.ascontiguousarray(array, dtype=np.uint8)
    digest = hashlib.sha256(array.tobytes()).hexdigest()
    if digest != spec.payload_sha256:
        raise DataError(
            f"{where}: SHA-256 mismatch: array bytes hash to {digest}, the official MNIST "
            f"{spec.npz_key} is {spec.payload_sha256}"
        )
    return array


def _verify_npz(path: Path) -> tuple[dict[str, np.ndarray], list[FileCheck]]:
    """Read and check every array of a Keras ``mnist.npz``."""
    arrays: dict[str, np.ndarray] = {}
    checks: list[FileCheck] = []
    try:
        with np.load(path, allow_pickle=False) as npz:
            present = set(npz.files)
            for key, spec in MNIST_FILES.items():
                where = f"{path}:{spec.npz_key}"
                check = FileCheck(f"{path.name}:{spec.npz_key}", path)
                checks.append(check)
                if spec.npz_key not in present:
                    check.problem = (
                        f"{where}: missing (a Keras {NPZ_NAME} has x_train, y_train, "
                        f"x_test, y_test; this one has {', '.join(sorted(present)) or 'nothing'})"
                    )
                    continue
                try:
                    arrays[key] = _check_npz_array(where, npz[spec.npz_key], spec)
                    check.shape = arrays[key].shape
                except DataError as exc:
                    check.problem = str(exc)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        problem = f"{path}: not a readable .npz file: {exc}"
        return {}, [FileCheck(path.name, path, problem)]
    return arrays, checks


def verify_location(location: Location) -> tuple[dict[str, np.ndarray], list[FileCheck]]:
    """Verify every file of ``location``: the arrays that passed and one check per file."""
    if location.layout == LAYOUT_NPZ:
        return _verify_npz(location.files["train_images"])
    arrays: dict[str, np.ndarray] = {}
    checks: list[FileCheck] = []
    for key, spec in MNIST_FILES.items():
        path = location.files[key]
        check = FileCheck(path.name, path)
        checks.append(check)
        try:
            arrays[key] = read_idx(path, spec)
            check.shape = arrays[key].shape
        except DataError as exc:
            check.problem = str(exc)
    return arrays, checks


def _mnist_from_arrays(arrays: dict[str, np.ndarray], source: str) -> MNIST:
    return MNIST(
        train_images=np.array(arrays["train_images"], dtype=np.uint8),
        train_labels=arrays["train_labels"].astype(np.int64),
        test_images=np.array(arrays["test_images"], dtype=np.uint8),
        test_labels=arrays["test_labels"].astype(np.int64),
        source=source,
    )


def describe_failures(checks: list[FileCheck]) -> str:
    """One message listing every failed check (file and problem)."""
    bad = [c for c in checks if not c.ok]
    head = f"MNIST data is corrupt ({len(bad)} of {len(checks)} files failed verification):"
    return "\n  ".join([head, *(str(c.problem) for c in bad)])


@lru_cache(maxsize=2)
def _load_verified(key: tuple) -> dict[str, np.ndarray]:
    """Verified, read-only arrays for a location; ``key`` pins the files' size and mtime."""
    layout, root, files = key[0], key[1], key[2]
    location = Location(Path(root), layout, {k: Path(p) for k, p, *_identity in files})
    arrays, checks = verify_location(location)
    if not all(c.ok for c in checks):
        raise DataError(describe_failures(checks))
    for array in arrays.values():
        array.flags.writeable = False
    return arrays


def _cache_key(location: Location) -> tuple:
    """Hashable identity of a location's files: path, real path, size and mtime of each."""
    files = []
    for key, path in sorted(location.files.items()):
        try:
            st = path.stat()
        except OSError as exc:
            raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        files.append((key, str(path), str(path.resolve()), st.st_size, st.st_mtime_ns))
    return (location.layout, str(location.root), tuple(files))


# --- finding ----------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The user cache folder for MNIST: ``$XDG_CACHE_HOME/digitlab/mnist`` or ``~/.cache/...``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "digitlab" / "mnist"


def mirrors() -> list[str]:
    """Base URLs to download from: ``$DIGITLAB_MNIST_MIRRORS`` (comma-separated) or defaults."""
    env = os.environ.get(ENV_MIRRORS, "")
    chosen = [m.strip() for m in env.split(",") if m.strip()] if env.strip() else DEFAULT_MIRRORS
    return [m if m.endswith("/") else m + "/" for m in chosen]


def _find_idx_file(folder: Path, spec: IdxSpec) -> Path | None:
    for name in (spec.name, f"{spec.name}.gz", spec.alt_name, f"{spec.alt_name}.gz"):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def find_in_folder(folder: str | os.PathLike) -> tuple[Location | None, str]:
    """Look for a complete MNIST in ``folder`` (any accepted layout).

    Returns ``(location, "")`` when found, else ``(None, why)`` where ``why`` says what is
    missing; ``why`` starts with ``"incomplete"`` when only some files are there.
    """
    folder = Path(folder)
    if folder.is_file() and folder.suffix == ".npz":
        return Location(folder.parent, LAYOUT_NPZ, dict.fromkeys(MNIST_FILES, folder)), ""
    if not folder.exists():
        return None, "does not exist"
    if not folder.is_dir():
        return None, "is not a folder"
    partial = ""
    for sub, layout in (
        ("", LAYOUT_IDX),
        ("raw", LAYOUT_TORCHVISION),
        ("MNIST/raw", LAYOUT_TORCHVISION),
    ):
        where = folder / sub if sub else folder
        found = {key: _find_idx_file(where, spec) for key, spec in MNIST_FILES.items()}
        if all(found.values()):
            return Location(folder, layout, {k: p for k, p in found.items() if p}), ""
        if any(found.values()) and not partial:
            missing = [MNIST_FILES[k].name for k, p in found.items() if p is None]
            partial = f"incomplete: {where} lacks {', '.join(missing)} (.gz or uncompressed)"
    npz = folder / NPZ_NAME
    if npz.is_file():
        return Location(folder, LAYOUT_NPZ, dict.fromkeys(MNIST_FILES, npz)), ""
    return None, partial or "no MNIST files there"


def _places(data_dir: str | os.PathLike | None) -> list[tuple[str, Path | None]]:
    """(label, folder) in search order; folder None = not configured."""
    if data_dir is not None:
        first: tuple[str, Path | None] = ("--data-dir", Path(data_dir).expanduser())
    else:
        env = os.environ.get(ENV_DATA, "")
        first = (f"${ENV_DATA}", Path(env).expanduser() if env else None)
    return [first, ("cache", cache_dir())]


def locate_mnist(data_dir: str | os.PathLike | None = None, *, download: bool = True) -> Location:
    """Find (or download into the cache) a complete MNIST; see the module docstring for order.

    Raises DataError naming every place looked in when there is none, or when the chosen
    folder holds only some of the files.
    """
    looked: list[str] = []
    for label, folder in _places(data_dir):
        if folder is None:
            looked.append(f"{label}: not set")
            continue
        location, why = find_in_folder(folder)
        if location is not None:
            location.origin = f"found via {label}"
            return location
        looked.append(f"{label} {folder}: {why}")
        if label != "cache" and why.startswith("incomplete"):
            raise DataError(f"MNIST in {folder} is {why}")
        if label != "cache":
            logger.warning("MNIST: %s %s: %s; trying the next place", label, folder, why)
    if not download:
        looked.append("download: disabled (--no-download / download=False)")
        raise DataError(_not_found_message(looked))
    target = cache_dir()
    try:
        urls = download_mnist(target)
    except DataError as exc:
        looked.append(f"download into {target}: {exc}")
        raise DataError(_not_found_message(looked)) from exc
    location, why = find_in_folder(target)
    if location is None:  # pragma: no cover - download_mnist guarantees the files
        raise DataError(f"download into {target} finished but the folder is {why}")
    location.origin = ("downloaded from " + ", ".join(urls)) if urls else "found via cache"
    return location


def _not_found_message(looked: list[str]) -> str:
    names = ", ".join(f"{spec.name}.gz" for spec in MNIST_FILES.values())
    return "\n".join(
        [
            "MNIST not found. Looked in:",
            *(f"  - {place}" for place in looked),
            f"Put the four files ({names}; uncompressed, torchvision raw/ or Keras {NPZ_NAME} "
            f"also work) in a folder and pass --data-dir or set ${ENV_DATA}.",
        ]
    )


def load_mnist(data_dir: str | os.PathLike | None = None, *, download: bool = True) -> MNIST:
    """Find, verify and load MNIST (see the module docstring for where it is looked for).

    ``data_dir`` (or ``$DIGITLAB_DATA``) is tried first, then the user cache, then (when
    ``download``) the public mirrors. Repeated loads of unchanged files within a process are
    served from memory; every call returns fresh, writeable arrays.
    """
    location = locate_mnist(data_dir, download=download)
    arrays = _load_verified(_cache_key(location))
    return _mnist_from_arrays(arrays, location.describe())


def inspect_mnist(
    data_dir: str | os.PathLike | None = None, *, download: bool = True
) -> DataReport:
    """Locate MNIST and verify every file, collecting each file's problem instead of raising.

    Raises DataError only when no MNIST is found; ``report.data`` is None unless all files pass.
    """
    location = locate_mnist(data_dir, download=download)
    arrays, checks = verify_location(location)
    report = DataReport(location, checks)
    if report.ok:
        report.data = _mnist_from_arrays(arrays, location.describe())
    return report


# --- downloading ------------------------------------------------------------------------------


class _TransientError(Exception):
    """A download failure worth retrying on the same mirror."""


def _fetch(url: str, out) -> None:
    """Stream ``url`` into the open binary file ``out``; check the announced length."""
    request = urllib.request.Request(url, headers={"User-Agent": f"digitlab/{__version__}"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
        announced = response.headers.get("Content-Length")
        received = 0
        while chunk := response.read(DOWNLOAD_CHUNK_BYTES):
            out.write(chunk)
            received += len(chunk)
    if announced is not None and announced.isdigit() and received != int(announced):
        raise _TransientError(f"interrupted: got {received} of {announced} bytes")


def _download_verified(url: str, target: Path, spec: IdxSpec) -> None:
    """Download ``url`` to a temp file beside ``target``, verify it, then rename it into place."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as out:
            _fetch(url, out)
        parse_idx(_read_file(Path(tmp), url), spec, url)

    atomic_write(target, write)


def _classify(exc: BaseException) -> tuple[str, bool]:
    """(message, retryable) for a failed download attempt."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}", exc.code in HTTP_RETRYABLE
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect: {exc.reason}", True
    if isinstance(exc, _TransientError | http.client.HTTPException | OSError):
        return str(exc) or type(exc).__name__, True
    return str(exc), False  # DataError: the mirror's file is bad; retrying will not help


def download_file(
    spec: IdxSpec,
    target_dir: Path,
    mirror_urls: Sequence[str],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Download ``spec``'s ``.gz`` into ``target_dir``, trying each mirror; returns the URL used.

    Transient failures (no connection, timeout, HTTP 5xx, a cut-off transfer) are retried
    :data:`DOWNLOAD_ATTEMPTS` times per mirror with exponential backoff; a 404 or a file that
    fails verification moves on to the next mirror at once.
    """
    filename = f"{spec.name}.gz"
    target = target_dir / filename
    errors: list[str] = []
    for base in mirror_urls:
        url = base + filename
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            logger.info("downloading %s (attempt %d/%d)", url, attempt, DOWNLOAD_ATTEMPTS)
            try:
                _download_verified(url, target, spec)
                return url
            except (OSError, http.client.HTTPException, _TransientError, DataError) as exc:
                message, retryable = _classify(exc)
            logger.warning("%s: %s", url, message)
            if not retryable or attempt == DOWNLOAD_ATTEMPTS:
                errors.append(f"{url}: {message}" if url not in message else message)
                break
            sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
    raise DataError(f"could not download {filename}: " + "; ".join(errors or ["no mirrors"]))


def download_mnist(target_dir: str | os.PathLike | None = None) -> list[str]:
    """Download the MNIST files missing from ``target_dir`` (default: the cache); the URLs used.

    Files already there (any accepted spelling) are kept; each new file is verified before it
    is renamed into place, so the folder never holds a partial or unverified download. When
    the download fails, the folders this call created are removed again if they are empty.
    """
    target = Path(target_dir) if target_dir is not None else cache_dir()
    created = [p for p in (target, *target.parents) if not p.exists()]  # deepest first
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {target}: {exc.strerror or exc}") from exc
    mirror_urls = mirrors()
    used = []
    try:
        for spec in MNIST_FILES.values():
            if _find_idx_file(target, spec) is None:
                used.append(download_file(spec, target, mirror_urls))
    except BaseException:
        # A failed (or interrupted) download leaves no empty folder behind: remove the ones
        # made here, while they are empty (rmdir never removes a file).
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return used


# --- train/validation split -------------------------------------------------------------------


def _as_int(name: str, value: object) -> int:
    """``value`` as an int (Python or numpy integer, not bool) or a DataError naming ``name``."""
    if not isinstance(value, bool):
        try:
            return operator.index(value)  # type: ignore[arg-type]
        except TypeError:
            pass
    raise DataError(f"split_indices: {name} must be an integer, got {value!r}")


def split_indices(n: int, val_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The fixed train/validation split: val = the first ``val_size`` of a seeded permutation.

    Returns ``(train_idx, val_idx)``, each sorted int64; together they are a partition of
    ``range(n)``. The same ``(n, val_size, seed)`` always gives the same split.
    """
    n, val_size, seed = (
        _as_int(name, v) for name, v in (("n", n), ("val_size", val_size), ("seed", seed))
    )
    if n <= 0:
        raise DataError(f"split_indices: n must be positive, got {n}")
    if val_size < 0:
        raise DataError(f"validation size must be 0 or more, got {val_size}")
    if val_size >= n:
        raise DataError(
            f"validation size {val_size} leaves no training data: it must be less than the "
            f"{n} training examples"
        )
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[val_size:]).astype(np.int64), np.sort(order[:val_size]).astype(np.int64)
