"""digitlab: handwritten-digit recognition, from MNIST training to a web page, desktop app and CLI.

Public API::

    import digitlab
    digitlab.available_models()          # the model zoo's names
    rec = digitlab.load_model()          # the bundled model (or a checkpoint / .onnx path)
    rec.predict(image)                   # image: path, PIL image or numpy array
    rec.read_number(image)               # multi-digit numbers

The package is layered (ARCHITECTURE.md): ``core`` (constants, errors, files; no torch) <-
``engine`` (image -> digit; no torch with ONNX) <- ``training`` (data, models, trainer,
export) <- ``api`` (load_model) <- ``apps`` (CLI, server, desktop app, web page).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "available_models", "load_model"]


def available_models() -> list[str]:
    """Names of every network in the model zoo (see ``digitlab models``)."""
    from digitlab.api import available_models as _available

    return _available()


def load_model(model=None, backend: str = "auto", device: str = "cpu"):
    """Load a recogniser: ``None`` = the bundled model, else a checkpoint or ``.onnx`` path.

    Imported lazily so that ``import digitlab`` stays cheap and an ONNX-only deployment never
    imports torch (see :func:`digitlab.api.load_model`).
    """
    from digitlab.api import load_model as _load

    return _load(model, backend=backend, device=device)
