"""``digitlab serve``: the web page and REST API on uvicorn."""

from __future__ import annotations

import argparse

from digitlab.core.constants import BACKENDS

BYTES_PER_MB = 1024 * 1024


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand.

    Every option can also come from a ``DIGITLAB_SERVE_*`` environment variable (e.g.
    ``DIGITLAB_SERVE_PORT=8080``); an option given on the command line wins. Defaults are not
    set here so that FastAPI is not imported for ``digitlab --help``.
    """
    p = sub.add_parser(
        "serve",
        help="serve the drawing page and the REST API",
        description=(
            "Serve the drawing page at / and the REST API (/api/predict, /api/predict/batch, "
            "/api/number, /api/model, /healthz; reference at /docs). Binds to loopback unless "
            "--host says otherwise. Options can also be set with DIGITLAB_SERVE_<OPTION> "
            "environment variables (e.g. DIGITLAB_SERVE_PORT)."
        ),
    )
    p.add_argument(
        "--host", help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)"
    )
    p.add_argument("--port", type=int, help="TCP port (default 8000)")
    p.add_argument(
        "--model",
        metavar="PATH",
        help="checkpoint (.pt) or ONNX file, or 'ensemble' (default: the bundled model)",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        help="inference backend (default auto: ONNX Runtime for the bundled model when "
        "onnxruntime is installed, else by the model file)",
    )
    p.add_argument(
        "--device",
        help="where PyTorch runs the network: cpu (default), cuda, cuda:N, mps or auto; a GPU "
        "implies --backend torch (README: GPU)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="server processes, each with its own copy of the model (default: one per "
        "core, at most 4; a second worker on 2 cores measured 1.6x the requests/s). 'Improve' "
        "switches every process to the improved model",
    )
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="model threads per process (default 1: a second one spins, costing shared cores more "
        "than it saves; add --workers instead)",
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        metavar="MB",
        help="largest request body accepted (default 10 MiB)",
    )
    p.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        default=None,
        help="do not log every request (faster)",
    )
    from digitlab.apps.feedback.options import add_serve_options as add_feedback_options

    add_feedback_options(p)
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):  # -> ServerSettings (imported lazily)
    """``DIGITLAB_SERVE_*`` environment settings, overridden by the options given."""
    from dataclasses import replace

    from digitlab.apps.server import ServerSettings
    from digitlab.core.errors import DigitlabError

    overrides = {
        name: getattr(args, name)
        for name in (
            "host",
            "port",
            "model",
            "backend",
            "device",
            "workers",
            "threads",
            "access_log",
        )
        if getattr(args, name) is not None
    }
    if args.max_body_mb is not None:
        if args.max_body_mb <= 0:
            raise DigitlabError(f"--max-body-mb must be positive, got {args.max_body_mb}")
        overrides["max_body_bytes"] = int(args.max_body_mb * BYTES_PER_MB)
    settings = replace(ServerSettings.from_env(), **overrides)
    if settings.port == 0 and not workers_given(args):
        # any free port means one process: workers cannot share a port chosen per process
        settings = replace(settings, workers=1)
    return settings


def workers_given(args: argparse.Namespace) -> bool:
    """Whether the number of processes was asked for (``--workers`` or its variable)."""
    import os

    from digitlab.core.settings import ENV_SERVE_PREFIX

    return getattr(args, "workers", None) is not None or f"{ENV_SERVE_PREFIX}WORKERS" in os.environ


def run(args: argparse.Namespace) -> int:
    """Load the model once (a bad --model fails here, clearly), then serve until Ctrl+C."""
    from dataclasses import replace

    from digitlab.apps.feedback.options import settings_from_args as feedback_from_args
    from digitlab.apps.feedback.personal import choose_model
    from digitlab.apps.server import check_port, load_recognizer, run_server

    settings = settings_from_args(args)
    feedback = feedback_from_args(args, settings.host)
    check_port(settings)  # a taken port fails here, in one line, before the model loads
    model, note = choose_model(settings.model)
    if note:
        print(f"digitlab serve: {note}")
        settings = replace(settings, model=model)
    recognizer = load_recognizer(settings)
    info = recognizer.info
    accuracy = f", test accuracy {info.test_accuracy:.2%}" if info.test_accuracy is not None else ""
    where = f" on {info.device}" if info.device != "cpu" else ""
    print(f"digitlab serve: model {info.name} ({info.backend}{where}{accuracy}) from {info.source}")
    print(f"digitlab serve: {feedback.banner()}")
    if settings.workers > 1:
        recognizer = None  # each worker process loads its own copy

    def announce(url: str) -> None:
        print(f"digitlab serve: open {url}  (API reference {url}docs; Ctrl+C stops)", flush=True)

    run_server(settings, recognizer=recognizer, feedback=feedback, on_ready=announce)
    return 0
