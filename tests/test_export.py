"""ONNX export, the ONNX Runtime backend and int8 quantisation, on the real MNIST test set.

One float and one int8 export of the bundled model are made per session through the real CLI
(``digitlab.apps.cli.main``); the float export's own report covers parity on all 10,000 test images,
the tests here re-check parity independently on 2,000 of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from digitlab.apps.cli import main  # noqa: E402
from digitlab.core.errors import CheckpointError  # noqa: E402
from digitlab.core.resolve import BUNDLED_MODEL  # noqa: E402
from digitlab.engine.backends.onnx import OnnxBackend  # noqa: E402
from digitlab.training.checkpoint import load_model_from_checkpoint  # noqa: E402
from digitlab.training.export import (  # noqa: E402
    MAX_INT8_ACCURACY_DROP,
    PARITY_PROB_TOLERANCE,
    calibration_images,
    softmax,
    to_model_input,
    verify_parity,
)

PARITY_SUBSET = 2000  # test images for the independent parity / accuracy checks
FULL_TEST_SET = 10_000


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``digitlab.apps.cli.main(argv)`` with stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _train_fallback_checkpoint(folder: Path, mnist) -> Path:
    """One epoch of digitnet_fast (~98-99%): used only while the bundled model is missing."""
    import torch

    from digitlab.training.checkpoint import save_checkpoint
    from digitlab.training.models import create_model, model_config

    torch.manual_seed(0)
    model = create_model("digitnet_fast")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.from_numpy(to_model_input(mnist.train_images))
    y = torch.from_numpy(mnist.train_labels)
    model.train()
    for idx in torch.randperm(len(x)).split(128):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    path = folder / "fallback.pt"
    save_checkpoint(
        path, model_name="digitnet_fast", model_config=model_config("digitnet_fast"), model=model
    )
    return path


@pytest.fixture(scope="session")
def checkpoint_path(mnist, tmp_path_factory) -> Path:
    """The bundled model (or, while it is missing, a one-epoch digitnet_fast)."""
    if BUNDLED_MODEL.exists():
        return BUNDLED_MODEL
    return _train_fallback_checkpoint(tmp_path_factory.mktemp("ckpt"), mnist)


@pytest.fixture(scope="session")
def torch_model(checkpoint_path):
    """The PyTorch model and checkpoint dict the exports come from."""
    return load_model_from_checkpoint(checkpoint_path)


@pytest.fixture(scope="session")
def float_export(checkpoint_path, mnist_dir, tmp_path_factory):
    """``digitlab export CKPT --out model.onnx`` (full 10k verification): (path, rc, stdout)."""
    out = tmp_path_factory.mktemp("float") / "model.onnx"
    rc, stdout, stderr = _run_cli(
        ["export", str(checkpoint_path), "--out", str(out), "--data-dir", str(mnist_dir)]
    )
    assert rc == 0, stderr
    return out, stdout


@pytest.fixture(scope="session")
def int8_export(checkpoint_path, mnist_dir, tmp_path_factory):
    """``digitlab export CKPT --quantize int8``: (path, stdout)."""
    out = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    rc, stdout, stderr = _run_cli(
        [
            "export",
            str(checkpoint_path),
            "--out",
            str(out),
            "--quantize",
            "int8",
            "--data-dir",
            str(mnist_dir),
        ]
    )
    assert rc == 0, stderr
    return out, stdout


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


# --- export round trip ----------------------------------------------------------------------------


def test_export_writes_one_checked_self_contained_file(float_export):
    path, _ = float_export
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no .data side file
    model = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(model, full_check=True)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    (inp,), (out,) = model.graph.input, model.graph.output
    in_dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert inp.name == "image" and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert isinstance(in_dims[0], str) and in_dims[1:] == [1, 28, 28]  # symbolic batch
    assert out.name == "logits" and isinstance(out_dims[0], str) and out_dims[1:] == [10]


def test_export_report_shows_parity_on_all_test_images(float_export):
    _, stdout = float_export
    argmax = re.search(r"identical argmax\s+([\d,]+) / ([\d,]+)", stdout)
    diff = re.search(r"max \|prob difference\| ([\d.e+-]+)", stdout)
    assert argmax and diff, stdout
    equal, total = (int(g.replace(",", "")) for g in argmax.groups())
    assert total == FULL_TEST_SET and equal == total
    assert float(diff.group(1)) <= PARITY_PROB_TOLERANCE


def test_dynamic_batch_gives_the_same_logits_per_image(float_export, mnist):
    backend = OnnxBackend(float_export[0])
    x = to_model_input(mnist.test_images[:256])
    whole = backend.logits(x)
    assert whole.shape == (256, 10) and whole.dtype == np.float32
    for size in (1, 3, 100):
        np.testing.assert_allclose(backend.logits(x[:size]), whole[:size], atol=1e-4)
    assert backend.logits(x[:0]).shape == (0, 10)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        backend.logits(x[:, 0])


def test_onnx_runtime_matches_pytorch_on_test_subset(float_export, torch_model, mnist):
    import torch

    model, ckpt = torch_model
    x = to_model_input(mnist.test_images[:PARITY_SUBSET])
    labels = mnist.test_labels[:PARITY_SUBSET]
    ort_logits = OnnxBackend(float_export[0]).logits(x)
    with torch.inference_mode():
        torch_logits = model(torch.from_numpy(x)).numpy()
    assert np.array_equal(ort_logits.argmax(1), torch_logits.argmax(1))
    t = ckpt["temperature"]
    assert np.abs(softmax(ort_logits, t) - softmax(torch_logits, t)).max() <= PARITY_PROB_TOLERANCE
    assert _accuracy(ort_logits, labels) > 0.97  # a real digit model, not just any function


def test_parity_check_detects_a_different_model(float_export, torch_model, mnist):
    """The verification can fail: a model with perturbed weights does not pass it."""
    import copy

    import torch

    model, _ = torch_model
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    n = 500
    report = verify_parity(float_export[0], other, mnist.test_images[:n], mnist.test_labels[:n])
    assert not report.ok and report.max_prob_diff > PARITY_PROB_TOLERANCE
    same = verify_parity(float_export[0], model, mnist.test_images[:n], mnist.test_labels[:n])
    assert same.ok and same.argmax_equal == n


# --- metadata ------------------------------------------------------------------------------------


def test_metadata_describes_model_input_and_source(float_export, torch_model, checkpoint_path):
    import digitlab
    from digitlab.core.constants import MNIST_MEAN, MNIST_STD
    from digitlab.training.models import count_parameters

    model, ckpt = torch_model
    backend = OnnxBackend(float_export[0])
    meta = backend.metadata
    assert backend.backend == "onnx"
    assert backend.record.name == ckpt["model_name"]
    assert json.loads(meta["model_config"]) == ckpt["model_config"]
    assert backend.record.parameters == count_parameters(model)
    assert backend.record.temperature == pytest.approx(ckpt["temperature"])
    assert backend.record.energy_reference == pytest.approx(ckpt.get("energy_reference"))
    test_acc = ckpt["metrics"].get("test_acc")
    assert backend.record.test_accuracy == (
        pytest.approx(test_acc) if test_acc is not None else None
    )
    assert backend.source == str(float_export[0])
    assert json.loads(meta["classes"]) == [str(d) for d in range(10)]
    described = json.loads(meta["input"])
    assert described["shape"][1:] == [1, 28, 28] and described["dtype"] == "float32"
    assert described["range"] == [0.0, 1.0] and "ink = 1.0" in described["polarity"]
    assert json.loads(meta["normalisation"]) == {"mean": MNIST_MEAN, "std": MNIST_STD}
    assert meta["digitlab_version"] == digitlab.__version__
    assert meta["source_checkpoint"] == str(checkpoint_path)
    assert meta["source_sha256"] == hashlib.sha256(checkpoint_path.read_bytes()).hexdigest()
    assert meta["quantization"].startswith("none")


# --- bad input -----------------------------------------------------------------------------------


def test_bad_checkpoint_gets_a_clear_error_and_exit_2(tmp_path):
    garbage = tmp_path / "broken.pt"
    garbage.write_bytes(b"this is not a torch checkpoint" * 10)
    out = tmp_path / "x.onnx"
    rc, _, stderr = _run_cli(["export", str(garbage), "--out", str(out), "--no-verify"])
    assert rc == 2 and str(garbage) in stderr and "cannot be read" in stderr
    assert "Traceback" not in stderr and not out.exists()

    missing = tmp_path / "nope.pt"
    rc, _, stderr = _run_cli(["export", str(missing), "--out", str(out), "--no-verify"])
    assert rc == 2 and str(missing) in stderr and "no such file" in stderr


def test_output_name_must_end_in_onnx(tmp_path):
    rc, _, stderr = _run_cli(["export", "default", "--out", str(tmp_path / "m.bin")])
    assert rc == 2 and "m.bin" in stderr and ".onnx" in stderr


def test_onnx_backend_rejects_bad_files(tmp_path, float_export):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01not onnx at all" * 100)
    truncated = tmp_path / "truncated.onnx"
    data = float_export[0].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    for bad, words in (
        (garbage, "cannot be loaded"),
        (truncated, "cannot be loaded"),
        (tmp_path / "missing.onnx", "no such file"),
        (tmp_path, "is a directory"),
    ):
        with pytest.raises(CheckpointError, match=words) as info:
            OnnxBackend(bad)
        assert str(bad) in str(info.value)


def test_onnx_backend_rejects_a_model_with_the_wrong_input(tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "rgb.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8  # readable by any onnxruntime >= 1.10
    onnx.save(model, str(path))
    with pytest.raises(CheckpointError, match=r"expected float32 \(N, 1, 28, 28\)") as info:
        OnnxBackend(path)
    assert str(path) in str(info.value)


def test_opset_option_is_honoured(tmp_path):
    out = tmp_path / "old.onnx"
    rc, stdout, stderr = _run_cli(
        ["export", "default", "--out", str(out), "--opset", "17", "--no-verify"]
    )
    assert rc == 0, stderr
    declared = {o.domain: o.version for o in onnx.load(str(out)).opset_import}
    assert declared.get("", declared.get("ai.onnx")) == 17 and "opset 17" in stdout
    assert OnnxBackend(out).logits(np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 10)


def test_export_without_mnist_works_and_says_parity_was_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no cached MNIST either
    monkeypatch.delenv("DIGITLAB_DATA", raising=False)
    empty = tmp_path / "no-mnist-here"
    empty.mkdir()
    out = tmp_path / "m.onnx"
    rc, stdout, stderr = _run_cli(
        ["export", "default", "--out", str(out), "--data-dir", str(empty)]
    )
    assert rc == 0, stderr
    assert "SKIPPED" in stdout and "MNIST is not available" in stdout and str(empty) in stdout
    assert OnnxBackend(out).logits(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)

    rc, stdout, _ = _run_cli(["export", "default", "--out", str(out), "--no-verify"])
    assert rc == 0 and "SKIPPED: --no-verify" in stdout


# --- int8 ----------------------------------------------------------------------------------------


def test_int8_model_is_smaller_and_about_as_accurate(int8_export, float_export, mnist):
    int8_path, stdout = int8_export
    assert int8_path.stat().st_size < 0.5 * float_export[0].stat().st_size
    onnx.checker.check_model(onnx.load(str(int8_path)), full_check=True)
    int8 = OnnxBackend(int8_path)
    assert "int8" in int8.record.quantization and "test" not in int8.record.quantization
    x = to_model_input(mnist.test_images[:PARITY_SUBSET])
    labels = mnist.test_labels[:PARITY_SUBSET]
    float_acc = _accuracy(OnnxBackend(float_export[0]).logits(x), labels)
    int8_acc = _accuracy(int8.logits(x), labels)
    assert int8_acc >= float_acc - MAX_INT8_ACCURACY_DROP
    # the report puts accuracy and speed of both models side by side
    rows = {
        m.group(1): m.groups()[1:]
        for m in re.finditer(
            r"^\s+(float|int8)\s+([\d.]+)%\s+([\d.]+)\s+([\d,]+)\s+([\d.]+)$", stdout, re.MULTILINE
        )
    }
    assert set(rows) == {"float", "int8"}, stdout
    assert all(float(r[2].replace(",", "")) > 0 for r in rows.values())


def test_calibration_uses_the_validation_split_never_test(mnist):
    from digitlab.training.data import split_indices

    ckpt = {"train_config": {"val_size": 5000, "split_seed": 3}}
    images, where = calibration_images(ckpt, mnist.train_images)
    _, val_idx = split_indices(len(mnist.train_images), 5000, 3)
    assert 100 <= len(images) <= 1000 and "validation" in where
    assert np.array_equal(images, mnist.train_images[np.sort(val_idx[: len(images)])])
    images, where = calibration_images({"train_config": {}}, mnist.train_images)
    assert "training" in where and len(images) >= 100


# --- no torch in the ONNX path -----------------------------------------------------------------


def _run_without_torch(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that fails on any torch import."""
    guard = textwrap.dedent(
        """
        import sys
        class _NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch import attempted in the ONNX path: " + name)
        sys.meta_path.insert(0, _NoTorch())
        """
    )
    return subprocess.run(
        [sys.executable, "-c", guard + textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_onnx_backend_never_imports_torch(float_export, mnist, tmp_path):
    images = tmp_path / "images.npy"
    np.save(images, mnist.test_images[:64])
    labels = mnist.test_labels[:64]
    proc = _run_without_torch(
        f"""
        import numpy as np
        from digitlab.engine.backends.onnx import OnnxBackend
        b = OnnxBackend({str(float_export[0])!r})
        x = np.load({str(images)!r}).astype(np.float32)[:, None] / 255
        print(" ".join(map(str, b.logits(x).argmax(1))))
        assert "torch" not in sys.modules, sorted(m for m in sys.modules if "torch" in m)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    predicted = np.array(proc.stdout.split(), dtype=np.int64)
    assert (predicted == labels).mean() > 0.9


def test_load_model_with_onnx_file_never_imports_torch(float_export, mnist, tmp_path):
    from PIL import Image

    digit = 255 - mnist.test_images[0]  # black ink on white paper, like a scan
    png = tmp_path / "digit.png"
    Image.fromarray(digit).resize((112, 112)).save(png)
    proc = _run_without_torch(
        f"""
        import digitlab
        rec = digitlab.load_model({str(float_export[0])!r})
        assert rec.info.backend == "onnx", rec.info
        print(rec.predict({str(png)!r}).digit)
        assert "torch" not in sys.modules, sorted(m for m in sys.modules if "torch" in m)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == str(mnist.test_labels[0])


def test_cli_predict_with_onnx_model_never_imports_torch(
    float_export, int8_export, mnist, tmp_path
):
    from PIL import Image

    pngs = []
    for i in range(3):
        pngs.append(tmp_path / f"digit{i}.png")
        Image.fromarray(255 - mnist.test_images[i]).resize((84, 84)).save(pngs[-1])
    for model in (float_export[0], int8_export[0]):
        argv = ["predict", "--model", str(model), "--format", "json", *map(str, pngs)]
        proc = _run_without_torch(
            f"""
            from digitlab.apps.cli import main
            rc = main({argv!r})
            assert "torch" not in sys.modules, sorted(m for m in sys.modules if "torch" in m)
            sys.exit(rc)
            """,
            tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        digits = {Path(row["path"]).name: row["digit"] for row in json.loads(proc.stdout)}
        assert digits == {png.name: int(y) for png, y in zip(pngs, mnist.test_labels, strict=False)}


def test_global_reductions_become_whole_map_pools_with_the_same_values():
    """pools_for_int8: ReduceMax/ReduceMean over H and W (axes as an input, opset 18) become
    MaxPool/AveragePool over the whole map + Flatten, giving the same numbers; a reduction over
    other axes is left alone."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from digitlab.training.export import pools_for_int8

    axes = numpy_helper.from_array(np.array([2, 3], np.int64), "axes")
    channel = numpy_helper.from_array(np.array([1], np.int64), "channel")
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMax", ["x", "axes"], ["amax"], keepdims=0),
            helper.make_node("ReduceMean", ["x", "axes"], ["mean"], keepdims=0),
            helper.make_node("ReduceMax", ["x", "channel"], ["cmax"], keepdims=0),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 7, 7])],
        [
            helper.make_tensor_value_info("amax", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("cmax", TensorProto.FLOAT, ["N", 7, 7]),
        ],
        [axes, channel],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    before = onnx.ModelProto()
    before.CopyFrom(model)
    assert pools_for_int8(model) == 2
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["MaxPool", "Flatten", "AveragePool", "Flatten", "ReduceMax"]
    assert [t.name for t in model.graph.initializer] == ["channel"]
    x = np.random.default_rng(0).random((3, 4, 7, 7), dtype=np.float32)
    runs = [
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": x}
        )
        for m in (before, model)
    ]
    for a, b in zip(*runs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
