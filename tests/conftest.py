"""Shared fixtures: where the real MNIST files are, and loading them once per session.

MNIST is read from ``$DIGITLAB_DATA`` or, failing that, ``../shared/mnist`` beside the repo.
When neither exists the tests that need it are skipped with a message naming both places —
except under CI (``CI=true``), where missing data is a failure, not a silent skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "mnist"
ARTIFACTS = REPO / "test-artifacts"


def mnist_dir_or_none() -> Path | None:
    env = os.environ.get("DIGITLAB_DATA")
    for candidate in ([Path(env)] if env else []) + [SHARED_MNIST]:
        if candidate.is_dir() and any(candidate.glob("*idx*")):
            return candidate
    return None


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder holding the four official MNIST files."""
    found = mnist_dir_or_none()
    if found is None:
        msg = f"real MNIST not found: set DIGITLAB_DATA or put the four IDX files in {SHARED_MNIST}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return found


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
