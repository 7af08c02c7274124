"""Shared fixtures: where the real MNIST files are, loading them once, and test isolation.

MNIST is found by ``benchmarks/common.py`` (``$DIGITLAB_DATA``, else ``../shared/mnist`` beside
the repo). When neither exists the tests that need it are skipped with a message naming both
places -- except under CI (``CI=true``), where missing data is a failure, not a silent skip --
and the run ends with one line saying how many tests were skipped and how to provide MNIST.

Every test starts from the same process state whatever ran before it: torch's thread count,
the working directory and the environment are restored after each test (a server or app
fixture sets threads process-wide; a CLI test may chdir).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common import SHARED_MNIST
from common import mnist_dir as find_mnist_dir

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
MNIST_HINT = (
    f"real MNIST not found: set DIGITLAB_DATA to a folder with the four MNIST files "
    f"(train/t10k images/labels IDX, .gz or not), or put them in {SHARED_MNIST}"
)
_skipped_for_mnist: list[str] = []


def mnist_dir_or_none() -> Path | None:
    """The MNIST folder for the tests, or None."""
    found = find_mnist_dir()
    return Path(found) if found else None


def pytest_report_header(config: pytest.Config) -> str:
    found = mnist_dir_or_none()
    return f"MNIST for the tests: {found if found else 'not found (tests that need it skip)'}"


@pytest.fixture(autouse=True)
def _restore_process_state():
    """Undo what a test (or a fixture it used) changed process-wide."""
    import torch  # imported here once, so its thread count is known before every test

    cwd = os.getcwd()
    environ = dict(os.environ)
    threads = torch.get_num_threads()
    yield
    if os.getcwd() != cwd:
        os.chdir(cwd)
    if dict(os.environ) != environ:
        os.environ.clear()
        os.environ.update(environ)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder holding the four official MNIST files."""
    found = mnist_dir_or_none()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(MNIST_HINT)
        _skipped_for_mnist.append("mnist")
        pytest.skip(MNIST_HINT)
    return found


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Without MNIST, say plainly how much was skipped and how to run it all."""
    if mnist_dir_or_none() is not None:
        return
    skipped = len(terminalreporter.stats.get("skipped", []))
    terminalreporter.write_line(
        f"{skipped} tests skipped because real MNIST was not found. {MNIST_HINT}.", yellow=True
    )


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path):
    """The verified MNIST arrays (loaded once for the whole test session)."""
    from digitlab.training.data import load_mnist

    return load_mnist(mnist_dir, download=False)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave screenshots and images for people to look at (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def x_display():
    """One private Xvfb server for every desktop-app test of the session (tests/test_gui.py)."""
    from test_gui import xvfb_display

    yield from xvfb_display()


@pytest.fixture(scope="session")
def recognizer():
    """The bundled model's recogniser, loaded once for the whole test session."""
    from digitlab.api import load_model

    return load_model(None)


@pytest.fixture(scope="module")
def server(recognizer):
    """Base URL of a real server on a free loopback port, with the default settings."""
    from digitlab.apps.server import ServerSettings, create_app
    from server_harness import BackgroundServer

    app = create_app(ServerSettings(access_log=False), recognizer=recognizer)
    with BackgroundServer(app) as url:
        yield url
