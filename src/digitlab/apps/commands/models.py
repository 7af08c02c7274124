"""``digitlab models``: list the model zoo.

Each row counts the parameters of the network the name builds with its defaults, except the
ensemble: an ensemble has no fixed size (it averages whatever members it is made of), so its row
counts the bundled ensemble (``weights/ensemble.pt``), the one ``--model ensemble`` runs.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``models`` subcommand."""
    p = sub.add_parser("models", help="list the networks in the model zoo")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def _bundled_ensemble_parameters() -> int | None:
    """Parameters of the bundled ensemble, or None when this install has none."""
    from digitlab.core.errors import DigitlabError
    from digitlab.core.resolve import ENSEMBLE_MODEL_NAME
    from digitlab.training.checkpoint import load_model_from_checkpoint
    from digitlab.training.models import count_parameters

    try:
        model, _ = load_model_from_checkpoint(ENSEMBLE_MODEL_NAME)
    except DigitlabError:
        return None
    return count_parameters(model)


def run(args: argparse.Namespace) -> int:
    """Print the zoo: name, parameters, default config, description."""
    from digitlab.core.resolve import ENSEMBLE_MODEL_NAME
    from digitlab.training.models import available_models, count_parameters, create_model, get_spec

    rows = []
    for name in available_models():
        spec = get_spec(name)
        params = None
        if name == ENSEMBLE_MODEL_NAME:
            params = _bundled_ensemble_parameters()
        rows.append(
            {
                "name": name,
                "parameters": params or count_parameters(create_model(name)),
                "config": spec.defaults,
                "description": spec.description,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'model':<{width}}  {'params':>9}  description")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['parameters']:>9,}  {r['description']}")
    return 0
