"""Checkpoints: round trip, atomic writes, weights-only safety and clear errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from digitlab.core.errors import CheckpointError
from digitlab.training.checkpoint import (
    FORMAT_VERSION,
    atomic_write,
    build_model,
    load_checkpoint,
    load_model_from_checkpoint,
    save_checkpoint,
)
from digitlab.training.models import create_model, model_config


def _save(path: Path, **kw) -> torch.nn.Module:
    model = create_model("digitnet_fast")
    save_checkpoint(
        path,
        model_name="digitnet_fast",
        model_config=model_config("digitnet_fast"),
        model=model,
        epoch=3,
        metrics={"val_acc": 0.5},
        **kw,
    )
    return model


def test_round_trip_rebuilds_identical_model(tmp_path: Path) -> None:
    model = _save(tmp_path / "m.pt", temperature=1.5)
    rebuilt, ckpt = load_model_from_checkpoint(tmp_path / "m.pt")
    assert ckpt["format_version"] == FORMAT_VERSION and ckpt["epoch"] == 3
    assert ckpt["temperature"] == 1.5
    x = torch.rand(4, 1, 28, 28)
    model.eval()
    torch.testing.assert_close(rebuilt(x), model(x))


def test_loads_with_plain_weights_only_torch_load(tmp_path: Path) -> None:
    _save(
        tmp_path / "m.pt", optimizer=torch.optim.AdamW(create_model("digitnet_fast").parameters())
    )
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    assert ckpt["model_name"] == "digitnet_fast"


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    torch.save({"format": "digitlab-checkpoint", "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a torch file at all", "cannot be read"),
        (None, "no such file"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "bad.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_foreign_dict_and_newer_format_and_wrong_weights(tmp_path: Path) -> None:
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a digitlab checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    _save(tmp_path / "m.pt")
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    torch.save({**ckpt, "format_version": FORMAT_VERSION + 1}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(tmp_path / "new.pt")
    torch.save({**ckpt, "model_config": {"c1": 8, "c2": 16, "fc": 32}}, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        build_model(load_checkpoint(tmp_path / "mismatch.pt"))


def test_atomic_write_keeps_old_file_when_writer_crashes(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    _save(path)
    before = path.read_bytes()

    def crash(tmp: str) -> None:
        Path(tmp).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, crash)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]  # no temp file left behind
    load_checkpoint(path)


def test_bundled_model_loads_without_a_path() -> None:
    ckpt = load_checkpoint(None)
    assert ckpt["model_name"] in {"digitnet", "digitnet_fast"}
    assert pickle.dumps(ckpt["model_config"])  # plain data only
