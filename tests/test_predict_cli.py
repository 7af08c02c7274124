"""``digitlab predict``: files, folders, globs, formats, numbers, errors, heat maps."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tune_images as synth
from digitlab.apps.cli import main
from imagegen import sample


@pytest.fixture(scope="module")
def images(tmp_path_factory, mnist):
    """A folder of digit images (PNG, JPEG, RGBA, nested), a number, a broken file."""
    root = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(7)
    idx = sample(6, seed=7)
    truth = {}
    (root / "nested" / "deeper").mkdir(parents=True)
    for k, i in enumerate(idx):
        kind = ("inverted", "rgba", "large")[k % 3]
        img = synth.canvas(mnist.test_images[i], kind, rng)
        folder = root if k < 3 else root / "nested" / ("deeper" if k == 5 else "")
        path = folder / f"digit{k}.{'jpg' if k == 2 else 'png'}"
        (img.convert("RGB") if path.suffix == ".jpg" else img).save(path)
        truth[str(path)] = int(mnist.test_labels[i])
    strip = synth.number_strip(
        mnist.test_images[idx[:3]], mnist.test_labels[idx[:3]], rng, touch_probability=0.0
    )
    strip.image.save(root / "number.png")
    (root / "notes.txt").write_text("not an image")  # not an image suffix: never listed
    return root, truth, strip.number


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["predict", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_for_files_and_nested_folders(images, capsys):
    root, truth, _ = images
    code, out, _ = _run(capsys, str(root / "nested"), str(root / "digit0.png"), "--format", "json")
    assert code == 0
    rows = json.loads(out)
    expected = [p for p in truth if "nested" in p] + [str(root / "digit0.png")]
    assert sorted(r["path"] for r in rows) == sorted(expected)
    for r in rows:
        assert r["digit"] == truth[r["path"]]
        assert 0.0 < r["confidence"] <= 1.0 and len(r["probabilities"]) == 10
        assert r["error"] is None and len(r["top"]) == 3


def test_globs_are_expanded_and_duplicates_dropped(images, capsys):
    root, truth, _ = images
    pattern = str(root / "**" / "*.png")
    code, out, _ = _run(capsys, pattern, str(root / "digit0.png"), "--format", "json")
    rows = json.loads(out)
    paths = [r["path"] for r in rows]
    assert code == 0 and len(paths) == len(set(paths))
    assert set(paths) == {p for p in truth if p.endswith(".png")} | {str(root / "number.png")}


def test_unreadable_file_is_reported_and_others_go_on(images, capsys, tmp_path):
    root, truth, _ = images
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    missing = tmp_path / "missing.png"
    code, out, err = _run(
        capsys,
        str(broken),
        str(root / "digit1.png"),
        str(missing),
        str(tmp_path / "*.gif"),
        "--format",
        "json",
    )
    assert code == 1
    rows = {r["path"]: r for r in json.loads(out)}
    assert rows[str(root / "digit1.png")]["digit"] == truth[str(root / "digit1.png")]
    assert "broken.png" in rows[str(broken)]["error"] and rows[str(broken)]["digit"] is None
    assert "no such file" in rows[str(missing)]["error"]
    assert "no files match" in rows[str(tmp_path / "*.gif")]["error"]
    assert "3 of 4 inputs failed" in err


def test_csv_and_table_formats(images, capsys):
    root, truth, _ = images
    code, out, _ = _run(capsys, str(root / "digit0.png"), "--format", "csv", "--top-k", "2")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1 and int(rows[0]["digit"]) == truth[str(root / "digit0.png")]
    assert len(rows[0]["top"].split()) == 2
    assert sum(float(rows[0][f"p{d}"]) for d in range(10)) == pytest.approx(1.0, abs=1e-4)
    code, out, _ = _run(capsys, str(root / "digit0.png"), str(root / "digit1.png"))
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["path", "digit", "conf", "top"]
    assert len(lines) == 3 and lines[1].split()[1] == str(truth[str(root / "digit0.png")])


def test_number_mode(images, capsys):
    root, _, number = images
    code, out, _ = _run(capsys, str(root / "number.png"), "--number", "--format", "json")
    assert code == 0
    (row,) = json.loads(out)
    assert row["number"] == number
    assert len(row["digits"]) == len(number)
    assert {"x", "y", "width", "height", "prediction"} <= set(row["digits"][0])


def test_explain_writes_heatmaps_the_size_of_the_input(images, capsys, tmp_path):
    root, _, _ = images
    out_dir = tmp_path / "heat"
    code, out, _ = _run(
        capsys, str(root / "digit0.png"), "--explain", str(out_dir), "--format", "json"
    )
    assert code == 0
    (row,) = json.loads(out)
    heat = Image.open(row["heatmap"])
    assert heat.size == Image.open(root / "digit0.png").size


def test_usage_errors_exit_2(images, capsys, tmp_path):
    root, _, _ = images
    code, _, err = _run(capsys, str(root / "digit0.png"), "--model", str(tmp_path / "no.pt"))
    assert code == 2 and "no.pt: no such file" in err
    code, _, err = _run(capsys, str(root / "digit0.png"), "--top-k", "0")
    assert code == 2 and "--top-k" in err


def test_progress_bar_only_on_a_terminal(images, capsys, monkeypatch):
    root, _, _ = images
    folder = root / "copies"  # 24 files: more than PROGRESS_MIN_FILES
    folder.mkdir(exist_ok=True)
    for k in range(24):
        (folder / f"c{k}.png").write_bytes((root / "digit0.png").read_bytes())
    code, _, err = _run(capsys, str(folder), "--format", "json")
    assert code == 0 and "24/24" not in err  # stderr is not a terminal here
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code, _, err = _run(capsys, str(folder), "--format", "json")
    assert code == 0 and "24/24" in err


def test_console_entry_point(images):
    root, truth, _ = images
    proc = subprocess.run(
        [sys.executable, "-m", "digitlab", "predict", str(root / "digit1.png"), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["digit"] == truth[str(root / "digit1.png")]


def test_explain_maps_the_reading_the_engine_chose(mnist, recognizer, capsys, tmp_path):
    """A digit cropped tight (a photo whose plain threshold wins): the CLI's heat map is the
    engine's own, computed on the reading it chose, not on the one it dropped."""
    from digitlab.engine.decode import load_image
    from digitlab.engine.explain import overlay
    from digitlab.engine.preprocess import to_model_input

    path = tmp_path / "tight.png"
    # 160 px: a photo (images under ink.FLATTEN_MIN_SIDE are read as scans, one way only).
    Image.fromarray(synth.cropped_tight(mnist.test_images[1], 160, dark_on_light=True)).save(path)
    pre = to_model_input(str(path))
    assert pre.alternative is not None  # read both ways; the plain reading must win
    assert recognizer.predict_preprocessed([pre])[0].preprocessed is not pre.image
    assert np.array_equal(recognizer.predict(str(path)).preprocessed, pre.alternative.image)

    out_dir = tmp_path / "heat"
    code, out, _ = _run(capsys, str(path), "--explain", str(out_dir), "--format", "json")
    assert code == 0
    (row,) = json.loads(out)
    expected = recognizer.predict(str(path), explain=True)
    assert row["digit"] == expected.digit == int(mnist.test_labels[1])
    written = np.asarray(Image.open(row["heatmap"]).convert("RGB"), dtype=np.int16)
    want = np.asarray(overlay(load_image(str(path)), expected.heatmap), dtype=np.int16)
    assert written.shape == want.shape
    assert np.abs(written - want).max() <= 1


def test_number_mode_reports_the_number_not_the_whole_strip(images, capsys):
    """In number mode every field describes the number: no single-digit reading of the whole
    strip beside it, and one uncertain flag, the number's."""
    root, _, number = images
    strip = str(root / "number.png")
    code, out, _ = _run(capsys, strip, "--number", "--format", "json", "--top-k", "2")
    assert code == 0
    (row,) = json.loads(out)
    assert row["number"] == number
    for key in ("digit", "confidence", "probabilities", "top", "number_uncertain"):
        assert key not in row
    digits = [d["prediction"] for d in row["digits"]]
    assert [d["digit"] for d in digits] == [int(c) for c in number]
    assert row["confidences"] == [d["confidence"] for d in digits]
    assert all(0.0 < c <= 1.0 for c in row["confidences"])
    assert all(len(d["top"]) == 2 for d in digits)
    assert row["uncertain"] == any(d["uncertain"] for d in digits)

    code, out, _ = _run(capsys, strip, "--number")
    header, line = out.splitlines()
    assert header.split()[:3] == ["path", "number", "digits"]
    assert line.split()[1] == number and "conf" not in header
    assert line.split()[2 : 2 + len(number)] == [
        f"{c}:{p:.2f}" for c, p in zip(number, row["confidences"], strict=True)
    ]

    code, out, _ = _run(capsys, strip, "--number", "--format", "csv")
    (csv_row,) = list(csv.DictReader(io.StringIO(out)))
    assert csv_row["number"] == number and "digit" not in csv_row
    assert csv_row["uncertain"] == str(int(row["uncertain"]))


def test_worker_processes_give_the_same_rows_in_order(images, capsys, tmp_path):
    """Many files are shared among processes; rows, errors and heat-map names come out as
    one process gives them (the same file twice gets two distinct heat maps)."""
    root, truth, _ = images
    folder = tmp_path / "many"
    (folder / "b").mkdir(parents=True)
    sources = [p for p in truth if p.endswith(".png")]
    for k in range(40):
        src = Path(sources[k % len(sources)])
        sub = folder / ("b" if k % 2 else "")
        (sub / f"x{k:02d}.png").write_bytes(src.read_bytes())
    (folder / "b" / "x00.png").write_bytes((root / "digit0.png").read_bytes())  # same stem
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    runs = {}
    for jobs in ("1", "2"):
        out_dir = tmp_path / f"heat{jobs}"
        args = [str(folder), "--format", "json", "--jobs", jobs, "--explain", str(out_dir)]
        code, out, err = _run(capsys, *args)
        assert code == 1 and "1 of 42 inputs failed" in err
        runs[jobs] = json.loads(out)
    one, two = runs["1"], runs["2"]
    assert [r["path"] for r in one] == [r["path"] for r in two]
    for a, b in zip(one, two, strict=True):
        assert a["digit"] == b["digit"] and a["error"] == b["error"]
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)
        assert a.get("heatmap") is None or Path(a["heatmap"]).name == Path(b["heatmap"]).name
    heatmaps = [r["heatmap"] for r in two if r["error"] is None]
    assert len(heatmaps) == 41 and len(set(heatmaps)) == 41
    assert all(Path(h).is_file() for h in heatmaps)
    assert "broken.png" in next(r["error"] for r in two if r["error"])


def test_number_mode_in_worker_processes(images, capsys, tmp_path):
    root, _, number = images
    folder = tmp_path / "numbers"
    folder.mkdir()
    for k in range(33):
        (folder / f"n{k:02d}.png").write_bytes((root / "number.png").read_bytes())
    code, out, _ = _run(capsys, str(folder), "--number", "--format", "json", "--jobs", "2")
    assert code == 0
    assert [r["number"] for r in json.loads(out)] == [number] * 33


def test_unknown_model_name_lists_the_valid_names(images, capsys):
    root, _, _ = images
    code, _, err = _run(capsys, str(root / "digit0.png"), "--model", "resnet9000")
    assert code == 2 and "resnet9000" in err
    assert "default" in err and "ensemble" in err and "Traceback" not in err


def test_bad_jobs_and_explain_with_number_are_usage_errors(images, capsys, tmp_path):
    root, _, _ = images
    code, _, err = _run(capsys, str(root / "digit0.png"), "--jobs", "0")
    assert code == 2 and "--jobs" in err
    code, _, err = _run(capsys, str(root / "number.png"), "--number", "--explain", str(tmp_path))
    assert code == 2 and "--explain" in err and "--number" in err


def test_every_image_format_is_listed(tmp_path, capsys):
    """Folders find every format the decoder reads (PPM included), and --help names them."""
    from digitlab.apps.commands.predict import expand_inputs
    from digitlab.core.constants import IMAGE_FORMATS, IMAGE_SUFFIXES

    Image.new("L", (28, 28)).save(tmp_path / "a.ppm")
    Image.new("L", (28, 28)).save(tmp_path / "b.pgm")
    assert [Path(p).name for p, _ in expand_inputs([str(tmp_path)])] == ["a.ppm", "b.pgm"]
    (tmp_path / "empty").mkdir()
    ((_, problem),) = expand_inputs([str(tmp_path / "empty")])
    assert all(s in problem for s in IMAGE_SUFFIXES)
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(f.label in help_text for f in IMAGE_FORMATS)


def test_onnx_backend_with_workers_preprocessing(images, capsys, tmp_path):
    """ONNX Runtime's threads do not survive a fork: each worker opens its own session (the
    main process none), and the rows are the same as in one process."""
    _, truth, _ = images
    folder = tmp_path / "onnx"
    folder.mkdir()
    sources = [p for p in truth if p.endswith(".png")]
    for k in range(34):
        (folder / f"o{k:02d}.png").write_bytes(Path(sources[k % len(sources)]).read_bytes())
    runs = []
    for jobs in ("1", "2"):
        code, out, _ = _run(
            capsys, str(folder), "--backend", "onnx", "--format", "csv", "--jobs", jobs
        )
        assert code == 0
        runs.append(out)
    assert runs[0] == runs[1]
    rows = list(csv.DictReader(io.StringIO(runs[1])))
    assert len(rows) == 34 and all(r["digit"] for r in rows)


def test_the_personal_model_is_used_when_installed_and_named(images, capsys, caplog, tmp_path):
    import logging
    import shutil

    from digitlab.core.resolve import BUNDLED_MODEL
    from digitlab.core.userdata import ENV_HOME

    _, truth, _ = images
    path = next(iter(truth))
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(BUNDLED_MODEL, home / "personal.pt")
    with pytest.MonkeyPatch.context() as mp, caplog.at_level(logging.INFO):
        mp.setenv(ENV_HOME, str(home))
        code, out, _ = _run(capsys, path, "--format", "json")
        assert code == 0 and json.loads(out)[0]["digit"] == truth[path]
        assert f"using your personal model {home / 'personal.pt'}" in caplog.text
        caplog.clear()
        code, _, _ = _run(capsys, path, "--model", "default")  # names the bundled model
        assert code == 0 and "personal" not in caplog.text


def test_bundled_model_runs_with_onnx_runtime_and_no_torch(images):
    """--backend auto: the bundled model runs with ONNX Runtime (no torch imported, in the
    main process or the workers' parent), with PyTorch's answers; a checkpoint stays torch."""
    from digitlab.apps.commands.predict import choose_backend

    assert choose_backend(None, "auto") == choose_backend("default", "auto") == "onnx"
    assert choose_backend("default", "torch") == "torch"
    assert choose_backend("my.pt", "auto") == choose_backend("ensemble", "auto") == "auto"
    root, truth, _ = images
    script = (
        "import sys; from digitlab.apps.cli import main; "
        f"rc = main(['predict', {str(root)!r}, '--format', 'json', '--jobs', '1']); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = {r["path"]: r for r in json.loads(proc.stdout)}
    for path, label in truth.items():
        assert rows[path]["digit"] == label
    code = [sys.executable, "-m", "digitlab", "predict", str(root), "--format", "json"]
    torch_rows = json.loads(
        subprocess.run([*code, "--backend", "torch"], capture_output=True, text=True).stdout
    )
    for row in torch_rows:
        assert row["probabilities"] == pytest.approx(rows[row["path"]]["probabilities"], abs=1e-5)


def test_a_model_the_workers_cannot_load_is_a_clean_error(images, capsys, tmp_path):
    """Workers open the ONNX model themselves: a corrupt file fails as in one process."""
    _, truth, _ = images
    folder = tmp_path / "bad-model"
    folder.mkdir()
    source = next(p for p in truth if p.endswith(".png"))
    for k in range(40):
        (folder / f"b{k:02d}.png").write_bytes(Path(source).read_bytes())
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    for jobs in ("1", "2"):
        code, out, err = _run(capsys, str(folder), "--model", str(bad), "--jobs", jobs)
        assert code == 2 and "cannot be loaded" in err and "Traceback" not in err
        assert out == ""


def test_torch_backend_in_worker_processes(images, capsys, tmp_path):
    """--backend torch: the model loaded once and inherited by the forked workers; the rows
    match ONNX Runtime's (the bundled model's two files give the same answers)."""
    _, truth, _ = images
    folder = tmp_path / "torch"
    folder.mkdir()
    sources = [p for p in truth if p.endswith(".png")]
    for k in range(34):
        (folder / f"t{k:02d}.png").write_bytes(Path(sources[k % len(sources)]).read_bytes())
    runs = {}
    for backend in ("torch", "onnx"):
        code, out, _ = _run(
            capsys, str(folder), "--backend", backend, "--format", "json", "--jobs", "2"
        )
        assert code == 0
        runs[backend] = json.loads(out)
    for a, b in zip(runs["torch"], runs["onnx"], strict=True):
        assert a["path"] == b["path"] and a["digit"] == b["digit"]
        assert a["uncertain"] == b["uncertain"]
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)
