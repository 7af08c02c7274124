"""``digitlab models``: list the model zoo."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the networks in the model zoo")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from digitlab.training.models import available_models, count_parameters, create_model, get_spec

    rows = []
    for name in available_models():
        spec = get_spec(name)
        rows.append(
            {
                "name": name,
                "parameters": count_parameters(create_model(name)),
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
