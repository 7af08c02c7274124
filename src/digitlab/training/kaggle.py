"""The Kaggle "Digit Recognizer" workflow: competition CSVs in, ``submission.csv`` out.

The competition gives ``train.csv`` (42,000 rows: ``label,pixel0..pixel783``) and ``test.csv``
(28,000 rows: ``pixel0..pixel783``) and expects ``submission.csv`` with the header
``ImageId,Label`` and one row per test image, ImageId counting from 1 in ``test.csv`` order.
Reading and validating the image CSVs is :func:`digitlab.training.kaggle_csv.load_kaggle_csv`; this
module adds the submission format (write, read, score), the training recipe, and
:func:`make_competition_csvs`, which builds a Kaggle-style competition from MNIST for trying the
workflow offline.

How ``make_competition_csvs`` splits MNIST (``seed`` 0 by default; the same arguments always give
the same files). Number the 70,000 MNIST images globally: 0..59,999 are MNIST-train images
0..59,999, 60,000..69,999 are MNIST-test images 0..9,999. Then

1. ``perm = default_rng(seed).permutation(60000)``: a fixed shuffle of the MNIST-train images;
2. ``train.csv`` rows are MNIST-train ``perm[:train_rows]``, in that order;
3. the same generator shuffles the 10,000 MNIST-test images and ``test.csv`` rows are the first
   ``test_rows`` of them.

``test.csv`` holds MNIST-test images only: models (the bundled one included) are trained on
MNIST train, so a test row taken from it would be scored on an image the model may have
learnt, and the score would not be a test score (issue #14: the earlier 28,000-row mix of
18,000 train and 10,000 test images scored the bundled model higher than its test images
alone). The default is therefore all 10,000 MNIST-test images (Kaggle's own test.csv has
28,000 rows; the format does not depend on the count). No image is in both files (one comes
from MNIST train, the other from MNIST test, and MNIST has no two identical images: checked,
no duplicate pixel arrays within or across its train and test sets). ``sources.csv`` records,
for every row of both files, which MNIST image it is.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.core.constants import NUM_CLASSES
from digitlab.core.errors import DataError, DigitlabError
from digitlab.core.io import atomic_write

log = logging.getLogger(__name__)

MNIST_TRAIN_SIZE = 60_000
MNIST_TEST_SIZE = 10_000
# Kaggle's Digit Recognizer has 42,000 labelled training rows (and 28,000 test rows, drawn
# from all of MNIST); `--make-csv` takes as many training rows from MNIST train and its test
# rows from MNIST test only, all of it by default (see the module docstring).
KAGGLE_TRAIN_ROWS = 42_000
MAKE_CSV_TEST_ROWS = MNIST_TEST_SIZE
SUBMISSION_COLUMNS = ("ImageId", "Label")
FIRST_IMAGE_ID = 1  # Kaggle numbers test images from 1
MAKE_CSV_SEED = 0

# The training recipe `digitlab kaggle` uses when no option overrides it. Keys are
# TrainConfig fields; options the user gives on the command line win over these. When the user
# picks another --model, ``model_config`` (sized for the recipe's model) is dropped. The lead
# tunes these values (see README, "Kaggle"); they are the TrainConfig defaults until then.
BEST_RECIPE: dict[str, Any] = {
    "model": "digitnet",
    "model_config": {},
    "epochs": 10,
    "batch_size": 128,
    "optimizer": "adamw",
    "weight_decay": 5e-4,
    "scheduler": "onecycle",
    "augment": True,
    "elastic": False,
    "label_smoothing": 0.0,
}

# The files `make_competition_csvs` writes into its folder.
TRAIN_CSV, TEST_CSV, ANSWERS_CSV, SOURCES_CSV = (
    "train.csv",
    "test.csv",
    "answers.csv",
    "sources.csv",
)
SOURCES_COLUMNS = ("file", "row", "mnist_set", "mnist_index")


@dataclass
class KaggleData:
    """Competition data in the shape :func:`digitlab.training.trainer.train` takes as ``data``.

    ``test_labels`` is None: Kaggle's test rows are unlabelled, so training reports no test
    metrics (run it with ``eval_test=False``).
    """

    train_images: np.ndarray  # uint8 (N, 28, 28)
    train_labels: np.ndarray  # int64 (N,)
    test_images: np.ndarray  # uint8 (M, 28, 28)
    test_labels: np.ndarray | None = None
    source: str = ""


def load_competition(
    train_csv: str | os.PathLike | None, test_csv: str | os.PathLike
) -> KaggleData:
    """Read and validate ``train.csv`` (labelled; optional) and ``test.csv`` (unlabelled).

    Both files are checked completely before anything else happens, so a bad value in the last
    row of ``test.csv`` is reported before hours of training rather than after. Raises
    :class:`DataError` naming the file, row and column of the first problem.
    """
    from digitlab.training.kaggle_csv import load_kaggle_csv

    if train_csv is not None:
        train_images, train_labels = load_kaggle_csv(train_csv, labelled=True)
        log.info("validated %s: %s labelled rows", train_csv, f"{len(train_labels):,}")
    else:
        train_images = np.empty((0, 28, 28), np.uint8)
        train_labels = np.empty(0, np.int64)
    test_images, _ = load_kaggle_csv(test_csv, labelled=False)
    log.info("validated %s: %s rows to predict", test_csv, f"{len(test_images):,}")
    return KaggleData(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        source=f"Kaggle CSV {train_csv}" if train_csv is not None else f"Kaggle CSV {test_csv}",
    )


def recipe_for(model: str | None) -> dict[str, Any]:
    """The :data:`BEST_RECIPE` options that apply when the user asked for ``model`` (or None).

    Everything but ``model_config`` applies to any model; ``model_config`` only to the
    recipe's own model, since its width/depth mean nothing to another network.
    """
    recipe = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BEST_RECIPE.items()}
    if model is not None and model != recipe["model"]:
        recipe["model"] = model
        recipe["model_config"] = {}
    return recipe


def predict_labels(
    model: Any, images: np.ndarray, *, device: Any = "cpu", batch_size: int | None = None
) -> np.ndarray:
    """Predicted digits (int64, shape ``(N,)``) for uint8 images ``(N, 28, 28)``, in batches."""
    from digitlab.training.evaluate import EVAL_BATCH, predict_logits

    logits = predict_logits(model, images, device=device, batch_size=batch_size or EVAL_BATCH)
    return logits.argmax(1).numpy().astype(np.int64)


# ---------------------------------------------------------------------------------------------
# submission.csv: ImageId,Label
# ---------------------------------------------------------------------------------------------


def submission_text(labels: np.ndarray) -> str:
    """The text of a submission for predicted ``labels`` (test.csv order, ImageId from 1)."""
    labels = np.asarray(labels)
    ids = np.arange(FIRST_IMAGE_ID, FIRST_IMAGE_ID + len(labels))
    lines = [",".join(SUBMISSION_COLUMNS)]
    lines += [f"{i},{int(y)}" for i, y in zip(ids, labels, strict=True)]
    return "\n".join(lines) + "\n"


def write_submission(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """Write ``submission.csv`` atomically: a failure leaves any earlier file untouched."""
    labels = np.asarray(labels)
    bad = (labels < 0) | (labels >= NUM_CLASSES)
    if bad.any():
        raise DigitlabError(f"label {labels[bad][0]} is not a digit 0-9; not writing {path}")
    text = submission_text(labels)
    path = Path(path)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", newline="\n"))
    return path


def read_submission(path: str | os.PathLike, *, what: str = "submission") -> np.ndarray:
    """Validate an ``ImageId,Label`` file and return its labels in ImageId order (1, 2, ...).

    Rows may come in any order, but every ImageId from 1 to the row count must appear exactly
    once and every Label must be a digit 0-9. Raises :class:`DataError` naming the file, the
    data row (1-based, header not counted; the file line beside it, as
    :func:`digitlab.training.kaggle_csv.load_kaggle_csv` does) and the column of the first problem.
    """
    path = Path(path)
    name = f"{what} {path}"
    rows = list(csv.reader(io.StringIO(_read_text(path, name))))
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()  # trailing blank lines
    if not rows:
        raise DataError(f"{name}: empty file (expected the header {','.join(SUBMISSION_COLUMNS)})")
    header, body = rows[0], rows[1:]
    if [h.strip() for h in header] != list(SUBMISSION_COLUMNS):
        raise DataError(
            f"{name}: header must be {','.join(SUBMISSION_COLUMNS)!r}, got {','.join(header)!r}"
        )
    if not body:
        raise DataError(f"{name}: has a header but no data rows")
    first_row_of: dict[int, int] = {}
    labels: dict[int, int] = {}
    for row, cells in enumerate(body, start=1):
        image_id, label = _parse_submission_row(name, row, cells)
        if image_id in first_row_of:
            raise DataError(
                f"{_where(name, row)}, column ImageId: ImageId {image_id} appears twice "
                f"(first on data row {first_row_of[image_id]})"
            )
        first_row_of[image_id] = row
        labels[image_id] = label
    n = len(labels)
    expected = range(FIRST_IMAGE_ID, FIRST_IMAGE_ID + n)
    for image_id in sorted(labels):
        if image_id not in expected:
            raise DataError(
                f"{_where(name, first_row_of[image_id])}, column ImageId: ImageId {image_id} "
                f"is out of range: {n} rows need ImageIds {expected.start}..{expected.stop - 1}"
            )
    return np.array([labels[i] for i in expected], dtype=np.int64)


def _where(name: str, row: int) -> str:
    return f"{name}: data row {row} (line {row + 1} of the file)"


def _read_text(path: Path, name: str) -> str:
    if not path.exists():
        raise DataError(f"{name}: no such file")
    if path.is_dir():
        raise DataError(f"{name}: is a directory, expected a CSV file")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: not a UTF-8 text file (byte {exc.start})") from None


def _parse_submission_row(name: str, row: int, cells: list[str]) -> tuple[int, int]:
    where = _where(name, row)
    if len(cells) != len(SUBMISSION_COLUMNS):
        raise DataError(
            f"{where}: has {len(cells)} columns, expected {len(SUBMISSION_COLUMNS)} "
            f"({','.join(SUBMISSION_COLUMNS)})"
        )
    values = []
    for column, cell in zip(SUBMISSION_COLUMNS, cells, strict=True):
        text = cell.strip()
        if not text:
            raise DataError(f"{where}, column {column}: missing value")
        try:
            values.append(int(text))
        except ValueError:
            raise DataError(f"{where}, column {column}: {text!r} is not an integer") from None
    image_id, label = values
    if not 0 <= label < NUM_CLASSES:
        raise DataError(f"{where}, column Label: {label} is not a digit 0-9")
    return image_id, label


@dataclass
class Score:
    """How a submission compares with the answer key."""

    correct: int
    total: int
    wrong_ids: list[int] = field(default_factory=list)  # ImageIds predicted wrongly

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")


def score_submission(submission: str | os.PathLike, answers: str | os.PathLike) -> Score:
    """Validate ``submission`` and score it against ``answers`` (both ``ImageId,Label``)."""
    predicted = read_submission(submission, what="submission")
    truth = read_submission(answers, what="answers")
    if len(predicted) != len(truth):
        raise DataError(
            f"submission {submission} has {len(predicted):,} rows but answers {answers} has "
            f"{len(truth):,}: a submission needs one row per test image"
        )
    hits = predicted == truth
    wrong = (np.flatnonzero(~hits) + FIRST_IMAGE_ID).tolist()
    return Score(correct=int(hits.sum()), total=len(truth), wrong_ids=wrong)


# ---------------------------------------------------------------------------------------------
# A Kaggle-style competition made from MNIST
# ---------------------------------------------------------------------------------------------


@dataclass
class CompetitionFiles:
    """What :func:`make_competition_csvs` wrote."""

    folder: Path
    train_csv: Path
    test_csv: Path
    answers_csv: Path
    sources_csv: Path
    train_rows: int
    test_rows: int


def competition_split(
    train_rows: int = KAGGLE_TRAIN_ROWS,
    test_rows: int = MAKE_CSV_TEST_ROWS,
    *,
    seed: int = MAKE_CSV_SEED,
    n_train: int = MNIST_TRAIN_SIZE,
    n_test: int = MNIST_TEST_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """Global MNIST indices (int64) of the ``train.csv`` and ``test.csv`` rows.

    Index ``g < n_train`` is MNIST-train image ``g``; ``g >= n_train`` is MNIST-test image
    ``g - n_train``. See the module docstring for the exact procedure. Raises
    :class:`DigitlabError` when the row counts do not fit MNIST.
    """
    if not 1 <= train_rows <= n_train:
        raise DigitlabError(
            f"--train-rows must be between 1 and {n_train:,} (MNIST's training images), "
            f"got {train_rows:,}"
        )
    if not 1 <= test_rows <= n_test:
        raise DigitlabError(
            f"--test-rows must be between 1 and {n_test:,} (MNIST's test images), got {test_rows:,}"
        )
    rng = np.random.default_rng(seed)
    train_idx = rng.permutation(n_train).astype(np.int64)[:train_rows]
    test_idx = n_train + rng.permutation(n_test).astype(np.int64)[:test_rows]
    return train_idx, test_idx


def make_competition_csvs(
    folder: str | os.PathLike,
    mnist: Any,
    *,
    train_rows: int = KAGGLE_TRAIN_ROWS,
    test_rows: int = MAKE_CSV_TEST_ROWS,
    seed: int = MAKE_CSV_SEED,
) -> CompetitionFiles:
    """Write ``train.csv``, ``test.csv``, ``answers.csv`` and ``sources.csv`` into ``folder``.

    ``mnist`` is the object :func:`digitlab.training.data.load_mnist` returns. ``train.csv``
    comes from MNIST train, ``test.csv`` from MNIST test only. ``answers.csv`` is the key
    (``ImageId,Label`` for ``test.csv``) that :func:`score_submission` scores against;
    ``sources.csv`` (``file,row,mnist_set,mnist_index``) names the MNIST image behind every row.
    Each file is written atomically.
    """
    from digitlab.training.kaggle_csv import write_kaggle_csv

    n_train, n_test = len(mnist.train_images), len(mnist.test_images)
    train_idx, test_idx = competition_split(
        train_rows, test_rows, seed=seed, n_train=n_train, n_test=n_test
    )
    all_images = np.concatenate([mnist.train_images, mnist.test_images])
    all_labels = np.concatenate([mnist.train_labels, mnist.test_labels]).astype(np.int64)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = CompetitionFiles(
        folder=folder,
        train_csv=folder / TRAIN_CSV,
        test_csv=folder / TEST_CSV,
        answers_csv=folder / ANSWERS_CSV,
        sources_csv=folder / SOURCES_CSV,
        train_rows=len(train_idx),
        test_rows=len(test_idx),
    )
    write_kaggle_csv(files.train_csv, all_images[train_idx], all_labels[train_idx])
    write_kaggle_csv(files.test_csv, all_images[test_idx])
    write_submission(files.answers_csv, all_labels[test_idx])
    sources = _sources_text(train_idx, test_idx, n_train)
    atomic_write(files.sources_csv, lambda tmp: Path(tmp).write_text(sources, encoding="utf-8"))
    log.info(
        "wrote %s (%s rows), %s (%s rows), %s and %s into %s",
        TRAIN_CSV,
        f"{files.train_rows:,}",
        TEST_CSV,
        f"{files.test_rows:,}",
        ANSWERS_CSV,
        SOURCES_CSV,
        folder,
    )
    return files


def _sources_text(train_idx: np.ndarray, test_idx: np.ndarray, n_train: int) -> str:
    lines = [",".join(SOURCES_COLUMNS)]
    for name, idx in ((TRAIN_CSV, train_idx), (TEST_CSV, test_idx)):
        for row, g in enumerate(idx.tolist(), start=1):
            mnist_set, index = ("train", g) if g < n_train else ("test", g - n_train)
            lines.append(f"{name},{row},{mnist_set},{index}")
    return "\n".join(lines) + "\n"
