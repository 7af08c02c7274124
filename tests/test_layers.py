"""The architecture, enforced: who may import whom (ARCHITECTURE.md).

    core  <-  engine  <-  training  <-  api  <-  apps

Each package may import only the layers to its left (and itself). Checked on the source text
(every ``import digitlab.x`` / ``from digitlab.x import``, function-level imports included),
and by importing: ``digitlab.core`` and ``digitlab.engine`` (with the ONNX backend) load no torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "digitlab"
ORDER = ["core", "engine", "training", "api", "apps"]
ALLOWED = {layer: set(ORDER[: i + 1]) for i, layer in enumerate(ORDER)}


def _layer(module: str) -> str | None:
    """The layer of a ``digitlab.*`` module name (None for the package root itself)."""
    parts = module.split(".")
    if parts[0] != "digitlab" or len(parts) == 1:
        return None
    return parts[1] if parts[1] in ORDER else None


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.lineno, "<relative>"))
    return found


def _files(layer: str) -> list[Path]:
    if layer == "api":
        return [SRC / "api.py"]
    return sorted((SRC / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", ORDER)
def test_each_layer_imports_only_the_layers_below_it(layer):
    offences = []
    for path in _files(layer):
        for line, module in _imports(path):
            if module == "<relative>":
                offences.append(f"{path.relative_to(SRC)}:{line}: relative import")
                continue
            target = _layer(module)
            if target is not None and target not in ALLOWED[layer]:
                offences.append(f"{path.relative_to(SRC)}:{line}: imports {module} ({target})")
    assert not offences, f"{layer} may import only {sorted(ALLOWED[layer])}:\n" + "\n".join(
        offences
    )


@pytest.mark.parametrize("layer", ["core", "engine"])
def test_no_torch_in_a_layer_s_source(layer):
    """No module of core or engine imports torch, except the torch backend itself."""
    offences = [
        f"{path.relative_to(SRC)}:{line}"
        for path in _files(layer)
        if path.name != "torch.py"
        for line, module in _imports(path)
        if module.split(".")[0] == "torch"
    ]
    assert not offences, "imports torch: " + ", ".join(offences)


def test_importing_core_and_engine_with_onnx_loads_no_torch():
    code = (
        "import sys, pkgutil, importlib\n"
        "import digitlab.core, digitlab.engine\n"
        "for pkg in (digitlab.core, digitlab.engine):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if not m.name.endswith('backends.torch'):\n"
        "            importlib.import_module(m.name)\n"
        "import digitlab\n"
        "rec = digitlab.load_model(backend='onnx')\n"
        "import numpy as np\n"
        "rec.predict(np.eye(40) * 255)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
