"""CLI smoke tests: the entry points exist, list their commands and fail cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from digitlab import __version__, available_models
from digitlab.apps.cli import COMMANDS, build_parser, main


def test_python_dash_m_and_console_script_run() -> None:
    for cmd in ([sys.executable, "-m", "digitlab", "--version"], ["digitlab", "--version"]):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        assert out.strip() == f"digitlab {__version__}"


def test_help_lists_every_subcommand(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_no_subcommand_prints_help_and_fails(capsys) -> None:
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_models_json_lists_the_zoo(capsys) -> None:
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == available_models()
    assert all(r["parameters"] > 0 and r["description"] for r in rows)


def test_unknown_option_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--no-such-option"])
    assert exit_.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_models_counts_the_bundled_ensemble(capsys) -> None:
    """The ensemble row is the ensemble `--model ensemble` runs, not an empty default."""
    from digitlab.training.checkpoint import load_model_from_checkpoint
    from digitlab.training.models import count_parameters

    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    model, _ = load_model_from_checkpoint("ensemble")
    assert rows["ensemble"]["parameters"] == count_parameters(model) > 1_000_000
    assert main(["models"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("ensemble"))
    assert f"{count_parameters(model):,}" in line


def test_evaluate_writes_files_only_when_asked(mnist_dir, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["evaluate", "default", "--json", "--split", "val", "--data-dir", str(mnist_dir)]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 5000 and report["files"] == {}
    assert list(tmp_path.iterdir()) == []  # no ./digitlab-eval/ left behind
    assert main([*argv[:-2], "--data-dir", str(mnist_dir), "--out", "pics"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == ["confusion.png", "errors.png"]
    assert report["files"]["confusion"] == str(Path("pics") / "confusion.png")


def test_failed_download_leaves_no_empty_cache_folder(tmp_path, monkeypatch, capsys) -> None:
    from digitlab.training import data

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DIGITLAB_MNIST_MIRRORS", "http://127.0.0.1:9/")  # nothing listens
    monkeypatch.delenv("DIGITLAB_DATA", raising=False)
    monkeypatch.setattr(data, "BACKOFF_SECONDS", 0.0)
    (tmp_path / "xdg").mkdir()
    assert main(["data"]) == 2
    assert "could not download" in capsys.readouterr().err
    assert list((tmp_path / "xdg").iterdir()) == []  # no digitlab/mnist left behind
