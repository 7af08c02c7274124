"""CLI smoke tests: the entry points exist, list their commands and fail cleanly."""

from __future__ import annotations

import json
import subprocess
import sys

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
