"""The feedback settings of a server and the ``digitlab serve`` options that set them.

``digitlab serve`` calls :func:`add_serve_options` on its parser and
:func:`settings_from_args` with the parsed arguments and the address it binds:

* ``--feedback`` / ``--no-feedback`` (``DIGITLAB_SERVE_FEEDBACK``): on by default on loopback,
  off on a server bound beyond it unless asked for;
* ``--feedback-db PATH|URL`` (``DIGITLAB_FEEDBACK_DB``): the store (default: the user's SQLite);
* ``--feedback-max N`` (``DIGITLAB_FEEDBACK_MAX``): the store's size cap;
* ``--admin-token TOKEN`` (``DIGITLAB_ADMIN_TOKEN``): needed, when exposed, to list, delete or
  retrain;
* ``--allowed-hosts a.example,b.example`` (``DIGITLAB_SERVE_ALLOWED_HOSTS``): the Host names
  the server answers to (default: loopback names, plus the bound address when specific).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from dataclasses import dataclass

from digitlab.apps.feedback.security import (
    default_allowed_hosts,
    is_loopback,
    parse_allowed_hosts,
)
from digitlab.apps.feedback.shared import ENV_SHARED
from digitlab.apps.feedback.store import ENV_FEEDBACK_DB, ENV_FEEDBACK_MAX
from digitlab.core.constants import MAX_IMAGE_PIXELS

ENV_FEEDBACK = "DIGITLAB_SERVE_FEEDBACK"
ENV_ADMIN_TOKEN = "DIGITLAB_ADMIN_TOKEN"
ENV_ALLOWED_HOSTS = "DIGITLAB_SERVE_ALLOWED_HOSTS"
TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class FeedbackSettings:
    """How a server handles feedback (see the module docstring)."""

    enabled: bool = True
    exposed: bool = False  # bound beyond loopback: listing/deleting/retraining need the token
    admin_token: str | None = None
    allowed_hosts: tuple[str, ...] = default_allowed_hosts("127.0.0.1")
    db: str | None = None  # None = $DIGITLAB_FEEDBACK_DB or the user's default store
    max_corrections: int | None = None  # None = $DIGITLAB_FEEDBACK_MAX or the default cap
    max_pixels: int = MAX_IMAGE_PIXELS
    missing: str | None = None  # why feedback is off although it would be on by default
    # the folder the worker processes of one server share the "Improve" job through
    # (apps.feedback.shared; set by run_server for --workers N, None in one process)
    shared_dir: str | None = None

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables, for ``--workers N`` processes (each
        rebuilds them with :func:`settings_from_env`)."""
        env = {
            ENV_FEEDBACK: "1" if self.enabled else "0",
            ENV_ALLOWED_HOSTS: ",".join(self.allowed_hosts),
        }
        if self.admin_token:
            env[ENV_ADMIN_TOKEN] = self.admin_token
        if self.db:
            env[ENV_FEEDBACK_DB] = self.db
        if self.max_corrections is not None:
            env[ENV_FEEDBACK_MAX] = str(self.max_corrections)
        if self.shared_dir:
            env[ENV_SHARED] = self.shared_dir
        return env

    def banner(self) -> str:
        """One line for the server's start-up banner."""
        if not self.enabled:
            hint = " (start with --feedback to keep corrections)" if self.exposed else ""
            if self.missing:
                hint = f" ({self.missing})"
            return f"feedback: off{hint}"
        admin = "admin token set" if self.admin_token else "no admin token: listing/deleting off"
        where = self.db or "the default store"
        return f"feedback: on, stored in {where}" + (f"; {admin}" if self.exposed else "")


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    """Add the feedback options to ``digitlab serve``'s parser."""
    group = parser.add_argument_group("feedback (corrections users make)")
    group.add_argument(
        "--feedback",
        dest="feedback",
        action="store_true",
        default=None,
        help="keep corrections (default: on when bound to loopback, off when exposed)",
    )
    group.add_argument(
        "--no-feedback", dest="feedback", action="store_false", help="do not keep corrections"
    )
    group.add_argument(
        "--feedback-db",
        metavar="PATH|URL",
        help="the store: a SQLite file or postgresql://... (default: $DIGITLAB_FEEDBACK_DB, "
        "else feedback.sqlite3 in the user data folder)",
    )
    group.add_argument(
        "--feedback-max", type=int, metavar="N", help="most corrections kept (default 100,000)"
    )
    group.add_argument(
        "--admin-token",
        metavar="TOKEN",
        help="token that lists, deletes and retrains on an exposed server "
        f"(or ${ENV_ADMIN_TOKEN}; prefer the variable: options show in ps)",
    )
    group.add_argument(
        "--allowed-hosts",
        metavar="NAMES",
        help="comma-separated Host names to answer to (default: loopback names and the bound "
        "address; '*' = any)",
    )


def settings_from_args(
    args: argparse.Namespace, host: str, environ: dict[str, str] | None = None
) -> FeedbackSettings:
    """The feedback settings of a server bound to ``host``, from the options and environment."""
    from digitlab.core.errors import DigitlabError

    env = os.environ if environ is None else environ
    exposed = not is_loopback(host)
    enabled = getattr(args, "feedback", None)
    missing = None
    if enabled is None:
        raw = env.get(ENV_FEEDBACK, "").strip().lower()
        enabled = (raw in TRUE) if raw else not exposed
        if enabled and not raw and importlib.util.find_spec("sqlalchemy") is None:
            # a lean (e.g. torch-free) deployment: serve without a store rather than fail
            enabled, missing = False, "pip install sqlalchemy to keep corrections"
    max_corrections = getattr(args, "feedback_max", None)
    if max_corrections is not None and max_corrections < 1:
        raise DigitlabError(f"--feedback-max must be at least 1, got {max_corrections}")
    hosts_text = getattr(args, "allowed_hosts", None) or env.get(ENV_ALLOWED_HOSTS, "")
    named = parse_allowed_hosts(hosts_text)
    if hosts_text and not named:
        raise DigitlabError(f"--allowed-hosts {hosts_text!r} names no host")
    # the names given, and always the loopback names (a local admin's curl)
    allowed = tuple(dict.fromkeys(named + default_allowed_hosts(host)))
    token = getattr(args, "admin_token", None) or env.get(ENV_ADMIN_TOKEN, "").strip() or None
    return FeedbackSettings(
        enabled=bool(enabled),
        exposed=exposed,
        admin_token=token,
        allowed_hosts=allowed,
        db=getattr(args, "feedback_db", None) or env.get(ENV_FEEDBACK_DB, "").strip() or None,
        max_corrections=max_corrections,
        missing=missing,
        shared_dir=env.get(ENV_SHARED, "").strip() or None,
    )


def settings_from_env(host: str, environ: dict[str, str] | None = None) -> FeedbackSettings:
    """The feedback settings of a worker process, from the environment alone."""
    return settings_from_args(argparse.Namespace(), host, environ)
