"""The ``--device`` names digitlab accepts (training, ``load_model``, ``serve``), without torch.

Which ``torch.device`` a name means, and whether it is on this machine, is decided where torch
is: :func:`digitlab.engine.backends.torch.resolve_device`.
"""

from __future__ import annotations

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def is_device_name(name: str) -> bool:
    """Whether ``name`` is a device name digitlab accepts (not whether that device is here)."""
    if name in ("auto", "cpu", "cuda", "mps"):
        return True
    index = name.removeprefix("cuda:")
    return name.startswith("cuda:") and index.isdigit()
