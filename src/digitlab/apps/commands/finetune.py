"""``digitlab finetune``: improve the model from the stored corrections.

    digitlab finetune [--feedback DB] [--from MODEL] [--out RUN_DIR] [--install]
    digitlab finetune --uninstall

Trains on the corrections mixed with MNIST replay, reports accuracy on a held-out slice of
the corrections and on MNIST validation (and test) before and after, and refuses -- writing
nothing, exit status 2 -- a model that loses more than 0.1 points on MNIST validation.
``--install`` makes the result the personal model that predict, serve and gui use.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``finetune`` subcommand."""
    # No torch here (digitlab --help, ONNX-only installs): defaults are FinetuneConfig's.
    p = sub.add_parser(
        "finetune",
        help="fine-tune the model on the stored corrections (with MNIST replay)",
        description=__doc__.split("\n\n")[2],
    )
    p.add_argument(
        "--feedback",
        metavar="DB",
        help="the corrections store (path or postgresql:// URL; default: the user's store)",
    )
    p.add_argument(
        "--from",
        dest="base",
        metavar="MODEL",
        help="checkpoint to start from (default: the personal model, else the bundled one)",
    )
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/<time>-finetune)")
    p.add_argument("--install", action="store_true", help="make the result the personal model")
    p.add_argument("--uninstall", action="store_true", help="remove the personal model and stop")
    p.add_argument("--steps", type=int, help="optimisation steps (default 120)")
    p.add_argument(
        "--holdout", type=float, help="share of corrections held out for before/after (0.2)"
    )
    p.add_argument("--lr", type=float, help="peak learning rate (default 0.0005)")
    p.add_argument(
        "--label-smoothing",
        type=float,
        help="label smoothing of the loss (default: the base model's own, from its training)",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--data-dir", help="MNIST folder (default: $DIGITLAB_DATA, cache, download)")
    p.add_argument("--no-test", dest="eval_test", action="store_false", help="skip MNIST test")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fine-tune, report, and install when asked."""
    from digitlab.apps.feedback import personal

    if args.uninstall:
        if personal.uninstall():
            print("digitlab finetune: personal model removed; back to the bundled model")
        else:
            print("digitlab finetune: no personal model was installed")
        return 0

    from digitlab.apps.feedback.store import FeedbackStore
    from digitlab.core.errors import DigitlabError
    from digitlab.training.finetune import (
        FinetuneConfig,
        FinetuneRefusedError,
        corrections_to_arrays,
        finetune,
    )

    base = args.base
    if base is None and personal.installed() is not None:
        base = str(personal.installed())
        print(f"digitlab finetune: starting from your personal model {base}", file=sys.stderr)
    if base is not None:
        personal.check_installable(base)
    with FeedbackStore(args.feedback, create=False) as store:
        images, labels, groups, skipped = corrections_to_arrays(store)
        where = store.where
    if len(labels) == 0:
        raise DigitlabError(f"{where}: no usable corrections to learn from")
    given = {
        name: getattr(args, name)
        for name in ("steps", "holdout", "lr", "label_smoothing", "seed")
        if getattr(args, name) is not None
    }
    cfg = FinetuneConfig(
        base=base,
        threads=args.threads,
        eval_test=args.eval_test,
        data_dir=args.data_dir,
        run_dir=args.out,
        **given,
    )
    try:
        report = finetune(images, labels, groups, cfg, skipped=skipped)
    except FinetuneRefusedError as exc:
        if args.json:
            print(json.dumps(exc.report.to_dict(), indent=2))
        else:
            print(exc.report.summary())
        raise
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary())
        print(f"checkpoint: {report.checkpoint}")
    if args.install:
        path = personal.install(report.checkpoint)
        print(f"installed as your personal model: {path} (predict, serve and gui use it)")
    return 0
