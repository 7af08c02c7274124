"""``digitlab feedback``: the corrections store from the command line.

    digitlab feedback add IMAGE LABEL [--predicted P] [--model M]
    digitlab feedback list [--limit N] [--json]
    digitlab feedback stats [--json]
    digitlab feedback export DIR | FILE.csv
    digitlab feedback import DIR
    digitlab feedback delete ID... | --all

Every subcommand takes ``--feedback-db PATH|URL`` (default ``$DIGITLAB_FEEDBACK_DB``, else the
user's SQLite store). ``export DIR`` writes the 28x28 image(s) the model saw as
``DIR/<digit>/<id>[-<k>].png`` (``import`` reads that layout back); ``export FILE.csv`` writes
Kaggle's train.csv format. ``import DIR`` takes image files in folders named by their label
(``DIR/7/a.png``, ``DIR/2026/b.jpg``) or named ``<label>_anything.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``feedback`` subcommand and its actions."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--feedback-db",
        metavar="PATH|URL",
        help="the store: a SQLite file or postgresql://... (default: $DIGITLAB_FEEDBACK_DB, "
        "else feedback.sqlite3 in the user data folder)",
    )
    p = sub.add_parser(
        "feedback",
        help="the corrections users made: add, list, stats, export, import, delete",
        description=__doc__.split("\n\n", 1)[0],
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    a = actions.add_parser("add", parents=[common], help="store a correction")
    a.add_argument("image", help="the image file")
    a.add_argument("label", help="the right digit (or a number's digits)")
    a.add_argument("--predicted", help="what the model said (default: what it says now)")
    a.add_argument("--model", help="model that reads it (default: personal, else bundled)")

    li = actions.add_parser("list", parents=[common], help="list stored corrections")
    li.add_argument("--limit", type=int, default=50, help="at most N rows (default 50)")
    li.add_argument("--offset", type=int, default=0)
    li.add_argument("--json", action="store_true")

    st = actions.add_parser("stats", parents=[common], help="counts per digit, source, model")
    st.add_argument("--json", action="store_true")

    ex = actions.add_parser("export", parents=[common], help="write PNG folders or a Kaggle CSV")
    ex.add_argument("target", help="a folder, or a file ending in .csv")

    im = actions.add_parser("import", parents=[common], help="store labelled image files")
    im.add_argument("folder")
    im.add_argument("--model", help="model that reads them (default: personal, else bundled)")

    de = actions.add_parser("delete", parents=[common], help="delete corrections")
    de.add_argument("ids", nargs="*", type=int, metavar="ID")
    de.add_argument("--all", action="store_true", help="delete every correction")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the action."""
    from digitlab.apps.feedback.store import FeedbackStore

    handlers = {
        "add": _add,
        "list": _list,
        "stats": _stats,
        "export": _export,
        "import": _import,
        "delete": _delete,
    }
    with FeedbackStore(args.feedback_db) as store:
        return handlers[args.action](args, store)


def _recognizer(model: str | None):
    from digitlab.api import load_model
    from digitlab.apps.feedback.personal import choose_model

    chosen, note = choose_model(model)
    if note:
        print(f"digitlab feedback: {note}", file=sys.stderr)
    return load_model(chosen)


def _add(args: argparse.Namespace, store) -> int:
    from digitlab.apps.feedback.capture import make_correction
    from digitlab.apps.feedback.store import check_label
    from digitlab.core.errors import ImageError

    check_label(args.label)  # before loading a model
    path = Path(args.image)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    rec = _recognizer(args.model)
    new = make_correction(
        rec, data, args.label, predicted=args.predicted, source="cli", name=str(path)
    )
    result = store.add(new)
    what = "already stored as" if result.duplicate else "stored as"
    print(
        f"{path}: label {new.label} (model said {new.predicted or 'no digit'}) {what} "
        f"correction {result.id}; the store holds {result.count}"
    )
    return 0


def _list(args: argparse.Namespace, store) -> int:
    from datetime import datetime

    rows = store.list(limit=args.limit, offset=args.offset)
    if args.json:
        print(json.dumps([r.summary() for r in rows], indent=2))
        return 0
    print(f"{'id':>6}  {'when':19}  {'source':6}  {'label':>8}  {'said':>8}  model")
    for r in rows:
        when = datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M:%S")
        said = r.predicted if r.predicted is not None else "?"
        print(f"{r.id:>6}  {when}  {r.source:6}  {r.label:>8}  {said or '-':>8}  {r.model_id}")
    print(f"{store.count()} correction(s) in {store.where}")
    return 0


def _stats(args: argparse.Namespace, store) -> int:
    stats = store.stats()
    if args.json:
        print(json.dumps(stats.to_dict(), indent=2))
        return 0
    print(f"{stats.count} correction(s) in {stats.location} (limit {stats.max_corrections:,})")
    print(f"  where the model was wrong: {stats.wrong}")
    print("  per digit:  " + "  ".join(f"{d}:{n}" for d, n in stats.by_digit.items()))
    print("  per source: " + ("  ".join(f"{s}:{n}" for s, n in stats.by_source.items()) or "-"))
    print("  per model:  " + ("  ".join(f"{m}:{n}" for m, n in stats.by_model.items()) or "-"))
    return 0


def _export(args: argparse.Namespace, store) -> int:
    import numpy as np
    from PIL import Image

    from digitlab.core.io import atomic_write

    target = Path(args.target)
    images, labels = [], []
    skipped = 0
    written = 0
    for row in store.iter_all(images=True):
        pairs = row.digit_tiles()
        if pairs is None:
            skipped += 1
            continue
        for k, (tile, digit) in enumerate(pairs):
            if target.suffix.lower() == ".csv":
                images.append(tile)
                labels.append(int(digit))
                continue
            name = f"{row.id}.png" if len(pairs) == 1 else f"{row.id}-{k}.png"
            path = target / digit / name
            atomic_write(path, lambda tmp, t=tile: Image.fromarray(t).save(tmp, format="PNG"))
            written += 1
    if target.suffix.lower() == ".csv":
        from digitlab.training.kaggle_csv import write_kaggle_csv

        stack = np.stack(images) if images else np.zeros((0, 28, 28), np.uint8)
        write_kaggle_csv(target, stack, np.asarray(labels, dtype=np.int64))
        written = len(images)
    note = f" ({skipped} number(s) skipped: digit count differs from the label)" if skipped else ""
    print(f"exported {written} digit image(s) to {target}{note}")
    return 0


def labelled_files(folder: Path) -> list[tuple[Path, str]]:
    """(file, label) for every image under ``folder``: the label is the parent folder's name
    when it is all digits, else the file name's part before the first '_'."""
    from digitlab.core.constants import IMAGE_SUFFIXES
    from digitlab.core.errors import DigitlabError

    if not folder.is_dir():
        raise DigitlabError(f"{folder}: not a folder")
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        parent = path.parent.name
        label = parent if parent.isdigit() and path.parent != folder else path.stem.split("_")[0]
        found.append((path, label))
    return found


def _import(args: argparse.Namespace, store) -> int:
    from digitlab.apps.feedback.capture import make_correction
    from digitlab.core.errors import DigitlabError

    files = labelled_files(Path(args.folder))
    if not files:
        raise DigitlabError(f"{args.folder}: no image files found")
    rec = _recognizer(args.model)
    added = duplicates = failed = 0
    for path, label in files:
        try:
            new = make_correction(rec, path.read_bytes(), label, source="cli", name=str(path))
            result = store.add(new)
        except DigitlabError as exc:
            from digitlab.apps.feedback.store import StoreError

            if isinstance(exc, StoreError):
                raise
            print(f"{path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        duplicates += result.duplicate
        added += not result.duplicate
    print(
        f"imported {added} correction(s) from {args.folder}"
        f" ({duplicates} already stored, {failed} unreadable); the store holds {store.count()}"
    )
    return 1 if failed else 0


def _delete(args: argparse.Namespace, store) -> int:
    from digitlab.core.errors import DigitlabError

    if args.all:
        if args.ids:
            raise DigitlabError("give IDs or --all, not both")
        print(f"deleted {store.delete_all()} correction(s)")
        return 0
    if not args.ids:
        raise DigitlabError("name the corrections to delete (IDs), or --all")
    missing = [i for i in args.ids if not store.delete(i)]
    for i in missing:
        print(f"no correction with id {i}", file=sys.stderr)
    print(f"deleted {len(args.ids) - len(missing)} correction(s); {store.count()} left")
    return 1 if missing else 0
