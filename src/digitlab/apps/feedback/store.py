"""The feedback store: every correction a user makes, kept safely (SQLAlchemy Core).

One code path for two databases, chosen by the location:

* a file path (the default: ``core.userdata.default_feedback_db()``) or ``sqlite:///...``: a
  SQLite file in WAL mode, ``synchronous=FULL`` (a row is on disk when ``add`` returns), every
  write in a ``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so concurrent
  writers queue on the busy timeout instead of failing with "database is locked");
* ``postgresql://user@host:port/db``: a PostgreSQL server (psycopg 3), for several server
  processes sharing one store. Inserts take a row lock on the store's meta row first, so the
  size cap holds exactly under concurrency.

A row holds the image as it was sent, the 28x28 image(s) the model saw (a PNG strip, one
28x28 tile per digit: one tile for a digit, k for a k-digit number), the predicted and the
corrected label (digit strings), the model's id, the time, the source (web, gui, api, cli), a
SHA-256 of image + label (an exact duplicate is not stored twice) and, for corrections made
through the API, the hash of an undo token (so the client that made it can take it back).

The schema has a version (table ``digitlab_meta``); an older store is migrated in one
transaction (:data:`MIGRATIONS`), a newer one is refused. A file that is not a SQLite
database, a database holding other tables, or a server that cannot be reached is a
:class:`StoreError` naming it; nothing is ever half-written (each change is one transaction).

One module (~650 lines) because schema, migrations, writes and reads must agree on one table
definition and one transaction discipline for SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from digitlab.core.constants import IMAGE_SIDE, NUM_CLASSES
from digitlab.core.errors import DigitlabError

log = logging.getLogger(__name__)

ENV_FEEDBACK_DB = "DIGITLAB_FEEDBACK_DB"  # the store's location (path or database URL)
ENV_FEEDBACK_MAX = "DIGITLAB_FEEDBACK_MAX"  # the size cap, in corrections
SCHEMA_VERSION = 1
STORE_KIND = "digitlab-feedback"  # what the meta table says this database is
# Where each correction came from.
SOURCES = ("web", "gui", "api", "cli")
# The size cap: 100,000 corrections of ~10 kB (a canvas PNG + its 28x28) is ~1 GB of disk.
DEFAULT_MAX_CORRECTIONS = 100_000
# A corrected number has at most this many digits (a long meter reading; more is a mistake).
MAX_LABEL_DIGITS = 32
MAX_MODEL_ID = 200
# SQLite: how long a writer waits for the write lock before giving up (a busy store, not an
# error: 32 clients writing at once wait a few ms each).
SQLITE_BUSY_TIMEOUT_S = 60.0
# PostgreSQL: the transaction that checks, creates or migrates the schema first takes this
# transaction-level advisory lock, so that the workers of `digitlab serve --workers N` opening
# a new database together create it once (unlocked, 53 of 80 racing openers failed with a
# duplicate key). SQLite needs none: that transaction is BEGIN IMMEDIATE, one writer at a time.
SCHEMA_LOCK_KEY = int.from_bytes(hashlib.sha256(b"digitlab feedback schema").digest()[:7], "big")
# PostgreSQL: how long to try to connect before calling the server unreachable.
CONNECT_TIMEOUT_S = 10
TABLE_META = "digitlab_meta"
TABLE_CORRECTIONS = "digitlab_corrections"


class StoreError(DigitlabError):
    """The feedback store cannot be opened or used; the message names it and why."""


class StoreFullError(StoreError):
    """The store holds as many corrections as its cap allows."""


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


def check_label(label: object, what: str = "label") -> str:
    """A corrected label as a digit string ("7", or "2026" for a number), or DigitlabError."""
    text = str(label).strip() if isinstance(label, (str, int)) else ""
    if isinstance(label, bool) or not text or not text.isascii() or not text.isdigit():
        raise DigitlabError(f"{what} must be a digit 0-9 (or a string of digits), got {label!r}")
    if len(text) > MAX_LABEL_DIGITS:
        raise DigitlabError(f"{what} has {len(text)} digits; at most {MAX_LABEL_DIGITS}")
    return text


def check_source(source: str) -> str:
    """One of :data:`SOURCES`, or DigitlabError."""
    if source not in SOURCES:
        raise DigitlabError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    return source


def content_hash(image: bytes, label: str) -> str:
    """The duplicate key: SHA-256 of the label and the image bytes as sent."""
    return hashlib.sha256(label.encode("ascii") + b"\0" + image).hexdigest()


def tiles_to_png(tiles: np.ndarray) -> bytes:
    """(k, 28, 28) uint8 model inputs as one 28 x 28k grayscale PNG strip."""
    tiles = np.asarray(tiles, dtype=np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    strip = np.concatenate(list(tiles), axis=1) if len(tiles) else np.zeros((IMAGE_SIDE, 0))
    buf = io.BytesIO()
    Image.fromarray(strip.astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def png_to_tiles(data: bytes) -> np.ndarray:
    """A stored strip back as (k, 28, 28) uint8."""
    with Image.open(io.BytesIO(data)) as img:
        strip = np.asarray(img.convert("L"), dtype=np.uint8)
    k = strip.shape[1] // IMAGE_SIDE
    return strip[:, : k * IMAGE_SIDE].reshape(IMAGE_SIDE, k, IMAGE_SIDE).transpose(1, 0, 2).copy()


@dataclass
class NewCorrection:
    """A correction to store (see :func:`digitlab.apps.feedback.capture.make_correction`)."""

    image: bytes  # the image as sent (encoded file bytes)
    label: str  # the right answer: a digit, or a number's digits
    model_input: np.ndarray  # (k, 28, 28) uint8: what the model saw, one tile per digit read
    predicted: str | None = None  # what the model said ("" = no digit; None = not known)
    model_id: str = ""
    source: str = "api"
    created: float | None = None  # Unix time; None = now
    undo_hash: str | None = None  # SHA-256 of the undo token given to the client


@dataclass
class Correction:
    """One stored correction (``image`` / ``model_input`` only when asked for)."""

    id: int
    created: float
    source: str
    label: str
    predicted: str | None
    model_id: str
    sha256: str
    image: bytes | None = None
    model_input: bytes | None = None  # PNG strip (see :func:`png_to_tiles`)

    @property
    def tiles(self) -> np.ndarray:
        """The 28x28 image(s) the model saw, (k, 28, 28) uint8."""
        if self.model_input is None:
            raise StoreError(f"correction {self.id} was read without its images")
        return png_to_tiles(self.model_input)

    @property
    def trainable(self) -> bool:
        """Whether each digit of the label has its 28x28 (a number whose segmentation found a
        different count of digits cannot be used for training)."""
        return self.model_input is not None and self.digit_tiles() is not None

    def digit_tiles(self) -> list[tuple[np.ndarray, str]] | None:
        """Each digit of the label with the 28x28 the model saw for it, in order; None when the
        segmentation found another count of digits than the label has (the one rule for
        training and exporting corrections)."""
        tiles = self.tiles
        if len(tiles) != len(self.label):
            return None
        return list(zip(tiles, self.label, strict=True))

    def summary(self) -> dict[str, Any]:
        """JSON-ready fields, without the images."""
        return {
            "id": self.id,
            "created": self.created,
            "source": self.source,
            "label": self.label,
            "predicted": self.predicted,
            "model_id": self.model_id,
            "sha256": self.sha256,
        }


@dataclass
class AddResult:
    """What :meth:`FeedbackStore.add` did: the row's id, whether it was already stored, and
    how many corrections the store holds now."""

    id: int
    duplicate: bool
    count: int


@dataclass
class Stats:
    """Counts per corrected digit, per source, per model (a number counts once per digit)."""

    count: int
    max_corrections: int
    by_digit: dict[str, int] = field(default_factory=dict)
    by_source: dict[str, int] = field(default_factory=dict)
    by_model: dict[str, int] = field(default_factory=dict)
    wrong: int = 0  # corrections whose label differs from the prediction
    location: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "count": self.count,
            "max_corrections": self.max_corrections,
            "wrong": self.wrong,
            "by_digit": self.by_digit,
            "by_source": self.by_source,
            "by_model": self.by_model,
            "location": self.location,
        }


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


def _schema() -> tuple[Any, Any, Any]:
    import sqlalchemy as sa

    metadata = sa.MetaData()
    meta = sa.Table(
        TABLE_META,
        metadata,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    corrections = sa.Table(
        TABLE_CORRECTIONS,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("label", sa.String(MAX_LABEL_DIGITS), nullable=False),
        sa.Column("predicted", sa.String(MAX_LABEL_DIGITS), nullable=True),
        sa.Column("model_id", sa.String(MAX_MODEL_ID), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("undo_hash", sa.String(64), nullable=True),
        sa.Column("image", sa.LargeBinary, nullable=False),
        sa.Column("model_input", sa.LargeBinary, nullable=False),
        # ids are never reused after a delete (an undo token names exactly one correction)
        sqlite_autoincrement=True,
    )
    return metadata, meta, corrections


# Migrations: MIGRATIONS[v](connection) takes a store from schema v to v + 1. Each runs in the
# same transaction as the version update, so a failed migration leaves the store as it was.
MIGRATIONS: dict[int, Callable[[Any], None]] = {}


def describe_location(location: str | os.PathLike) -> str:
    """The store's location for messages (a URL's password hidden)."""
    text = str(location)
    if "://" in text:
        try:
            import sqlalchemy as sa

            return sa.engine.make_url(text).render_as_string(hide_password=True)
        except Exception:
            return text.split("://", 1)[0] + "://..."
    return text


def resolve_location(location: str | os.PathLike | None = None) -> str:
    """The store's location: ``location``, else ``$DIGITLAB_FEEDBACK_DB``, else the default
    SQLite file in the user data folder."""
    from digitlab.core.userdata import default_feedback_db

    if location is None or str(location).strip() == "":
        location = os.environ.get(ENV_FEEDBACK_DB, "").strip() or default_feedback_db()
    return str(location)


def max_corrections_from_env(default: int = DEFAULT_MAX_CORRECTIONS) -> int:
    """``$DIGITLAB_FEEDBACK_MAX`` if it is a positive integer, else ``default``."""
    from digitlab.core.settings import positive_int_env

    return positive_int_env(ENV_FEEDBACK_MAX, default)


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


class FeedbackStore:
    """A feedback store at a path or database URL; safe to share between threads.

    ``FeedbackStore(None)`` opens the default store (``$DIGITLAB_FEEDBACK_DB`` or the user
    data folder's SQLite file), creating it when missing. ``max_corrections`` caps its size
    (``add`` raises :class:`StoreFullError` once reached).
    """

    def __init__(
        self,
        location: str | os.PathLike | None = None,
        *,
        max_corrections: int | None = None,
        create: bool = True,
    ) -> None:
        try:
            import sqlalchemy as sa
        except ImportError:
            raise StoreError(
                "the feedback store needs SQLAlchemy: pip install sqlalchemy 'psycopg[binary]'"
            ) from None
        self._sa = sa
        self.location = resolve_location(location)
        self.where = describe_location(self.location)
        self.max_corrections = (
            max_corrections if max_corrections is not None else max_corrections_from_env()
        )
        if self.max_corrections < 1:
            raise StoreError(f"feedback store size cap must be >= 1, got {self.max_corrections}")
        self._metadata, self._meta, self._rows = _schema()
        self.engine = self._make_engine(create)
        self.dialect = self.engine.dialect.name
        self._writer = self.engine.execution_options(digitlab_write=True)
        try:
            self._open(create)
        except BaseException:
            self.engine.dispose()
            raise

    # -- connecting ---------------------------------------------------------------------------

    def _make_engine(self, create: bool) -> Any:
        sa = self._sa
        text = self.location
        if "://" not in text:
            path = Path(text).expanduser()
            if path.is_dir():
                raise StoreError(f"feedback store {path}: is a directory, expected a database file")
            if not path.exists():
                if not create:
                    raise StoreError(f"feedback store {path}: no such file")
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(
                        f"feedback store {path}: cannot create its folder: {exc.strerror}"
                    ) from None
            url = sa.engine.URL.create("sqlite", database=str(path.resolve()))
            self.where = str(path)
        else:
            try:
                url = sa.engine.make_url(text)
            except Exception:
                raise StoreError(f"feedback store {self.where}: not a database URL") from None
            if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
                url = url.set(drivername="postgresql+psycopg")
            elif url.drivername not in ("sqlite", "sqlite+pysqlite"):
                raise StoreError(
                    f"feedback store {self.where}: unsupported database {url.drivername!r} "
                    "(use a file path, sqlite:///PATH or postgresql://...)"
                )
        if url.get_backend_name() == "sqlite":
            if url.database in (None, "", ":memory:"):
                raise StoreError("feedback store: an in-memory SQLite database keeps nothing")
            engine = sa.create_engine(
                url,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            )
            _sqlite_events(sa, engine)
            return engine
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise StoreError(
                f"feedback store {self.where}: PostgreSQL needs psycopg: "
                "pip install 'psycopg[binary]'"
            ) from None
        return sa.create_engine(
            url,
            pool_pre_ping=True,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
        )

    def _fail(self, exc: Exception, doing: str) -> StoreError:
        """A database exception as a StoreError naming the store."""
        orig = getattr(exc, "orig", None) or exc
        reason = " ".join(str(orig).split())[:300] or type(orig).__name__
        sa = self._sa
        if isinstance(exc, sa.exc.OperationalError) and self.dialect != "sqlite":
            return StoreError(f"feedback store {self.where}: cannot reach the server ({reason})")
        if self.dialect == "sqlite" and "not a database" in reason:
            return StoreError(
                f"feedback store {self.where}: not a SQLite database, or corrupt ({reason})"
            )
        return StoreError(f"feedback store {self.where}: {doing} failed: {reason}")

    def _open(self, create: bool) -> None:
        """Check (or create, or migrate) the schema, in one transaction."""
        sa = self._sa
        try:
            with self._writer.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY}
                    )
                names = set(sa.inspect(conn).get_table_names())
                if TABLE_META not in names:
                    if names:
                        shown = ", ".join(sorted(names)[:5])
                        raise StoreError(
                            f"feedback store {self.where}: this database holds other tables "
                            f"({shown}) and is not a digitlab feedback store"
                        )
                    if not create:
                        raise StoreError(f"feedback store {self.where}: empty database")
                    self._metadata.create_all(conn)
                    conn.execute(
                        self._meta.insert(),
                        [
                            {"key": "kind", "value": STORE_KIND},
                            {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                        ],
                    )
                    log.info("created feedback store %s", self.where)
                    return
                meta = dict(conn.execute(sa.select(self._meta.c.key, self._meta.c.value)).all())
                if meta.get("kind") != STORE_KIND:
                    raise StoreError(
                        f"feedback store {self.where}: its {TABLE_META} table does not describe "
                        "a digitlab feedback store"
                    )
                version = int(meta.get("schema_version", "0") or 0)
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"feedback store {self.where}: schema version {version} is newer than "
                        f"this digitlab understands ({SCHEMA_VERSION}); upgrade digitlab"
                    )
                while version < SCHEMA_VERSION:
                    migrate = MIGRATIONS.get(version)
                    if migrate is None:
                        raise StoreError(
                            f"feedback store {self.where}: no migration from schema version "
                            f"{version}"
                        )
                    log.info(
                        "migrating feedback store %s: schema %d -> %d",
                        self.where,
                        version,
                        version + 1,
                    )
                    migrate(conn)
                    version += 1
                    conn.execute(
                        self._meta.update()
                        .where(self._meta.c.key == "schema_version")
                        .values(value=str(version))
                    )
        except StoreError:
            raise
        except self._sa.exc.SQLAlchemyError as exc:
            raise self._fail(exc, "opening") from None

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------

    def add(self, new: NewCorrection) -> AddResult:
        """Store one correction in one transaction; an exact duplicate (same image bytes and
        label) is not stored again (``duplicate`` says so). Raises :class:`StoreFullError` at
        the size cap, :class:`StoreError` when the database fails."""
        sa = self._sa
        label = check_label(new.label)
        source = check_source(new.source)
        predicted = None if new.predicted is None else str(new.predicted)[:MAX_LABEL_DIGITS]
        if not new.image:
            raise DigitlabError("a correction needs its image (0 bytes given)")
        digest = content_hash(new.image, label)
        row = {
            "created": time.time() if new.created is None else float(new.created),
            "source": source,
            "label": label,
            "predicted": predicted,
            "model_id": (new.model_id or "unknown")[:MAX_MODEL_ID],
            "sha256": digest,
            "undo_hash": new.undo_hash,
            "image": bytes(new.image),
            "model_input": tiles_to_png(new.model_input),
        }
        c = self._rows.c
        try:
            with self._writer.begin() as conn:
                if self.dialect == "postgresql":  # serialise inserts: the cap holds exactly
                    conn.execute(
                        sa.select(self._meta.c.key)
                        .where(self._meta.c.key == "schema_version")
                        .with_for_update()
                    )
                existing = conn.execute(sa.select(c.id).where(c.sha256 == digest)).scalar()
                count = conn.execute(sa.select(sa.func.count()).select_from(self._rows)).scalar()
                if existing is not None:
                    return AddResult(int(existing), True, int(count))
                if count >= self.max_corrections:
                    raise StoreFullError(
                        f"feedback store {self.where} is full: it holds {count:,} corrections, "
                        f"its limit ({ENV_FEEDBACK_MAX} or --feedback-max); export and delete "
                        "some (digitlab feedback export / delete) or raise the limit"
                    )
                new_id = conn.execute(self._rows.insert().values(**row)).inserted_primary_key[0]
                return AddResult(int(new_id), False, int(count) + 1)
        except StoreError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            raise self._fail(exc, "saving a correction") from None

    def delete(self, correction_id: int) -> bool:
        """Delete one correction; False when there is none with that id."""
        return self._delete(self._rows.c.id == int(correction_id)) > 0

    def delete_all(self) -> int:
        """Delete every correction; returns how many there were."""
        return self._delete(None)

    def _delete(self, where: Any) -> int:
        sa = self._sa
        stmt = self._rows.delete() if where is None else self._rows.delete().where(where)
        try:
            with self._writer.begin() as conn:
                return int(conn.execute(stmt).rowcount or 0)
        except sa.exc.SQLAlchemyError as exc:
            raise self._fail(exc, "deleting") from None

    # -- reading ------------------------------------------------------------------------------

    def _read(self, stmt: Any) -> list[Any]:
        sa = self._sa
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(stmt).all())
        except sa.exc.SQLAlchemyError as exc:
            raise self._fail(exc, "reading") from None

    def count(self) -> int:
        """How many corrections the store holds."""
        sa = self._sa
        return int(self._read(sa.select(sa.func.count()).select_from(self._rows))[0][0])

    def _columns(self, images: bool) -> list[Any]:
        c = self._rows.c
        cols = [c.id, c.created, c.source, c.label, c.predicted, c.model_id, c.sha256]
        return [*cols, c.image, c.model_input] if images else cols

    def list(
        self, *, limit: int | None = None, offset: int = 0, images: bool = False
    ) -> list[Correction]:
        """Corrections in the order they were made (oldest first)."""
        sa = self._sa
        stmt = sa.select(*self._columns(images)).order_by(self._rows.c.id).offset(int(offset))
        if limit is not None:
            stmt = stmt.limit(int(limit))
        return [Correction(*row) for row in self._read(stmt)]

    def get(self, correction_id: int, *, images: bool = True) -> Correction | None:
        """One correction by id, or None."""
        sa = self._sa
        stmt = sa.select(*self._columns(images)).where(self._rows.c.id == int(correction_id))
        rows = self._read(stmt)
        return Correction(*rows[0]) if rows else None

    def undo_hash(self, correction_id: int) -> str | None:
        """The stored hash of a correction's undo token (None: none, or no such row)."""
        sa = self._sa
        rows = self._read(
            sa.select(self._rows.c.undo_hash).where(self._rows.c.id == int(correction_id))
        )
        return rows[0][0] if rows else None

    def iter_all(self, *, images: bool = True, batch: int = 500) -> Iterator[Correction]:
        """Every correction, oldest first, read ``batch`` rows at a time."""
        last = 0
        sa = self._sa
        while True:
            stmt = (
                sa.select(*self._columns(images))
                .where(self._rows.c.id > last)
                .order_by(self._rows.c.id)
                .limit(batch)
            )
            rows = self._read(stmt)
            if not rows:
                return
            for row in rows:
                yield Correction(*row)
            last = rows[-1][0]

    def stats(self) -> Stats:
        """Counts per corrected digit, per source and per model."""
        sa = self._sa
        c = self._rows.c
        by_source = {
            s: int(n)
            for s, n in self._read(sa.select(c.source, sa.func.count()).group_by(c.source))
        }
        by_model = {
            m: int(n)
            for m, n in self._read(sa.select(c.model_id, sa.func.count()).group_by(c.model_id))
        }
        by_digit = {str(d): 0 for d in range(NUM_CLASSES)}
        wrong = 0
        for label, predicted, n in self._read(
            sa.select(c.label, c.predicted, sa.func.count()).group_by(c.label, c.predicted)
        ):
            for ch in label:
                by_digit[ch] += int(n)
            if predicted is not None and predicted != label:
                wrong += int(n)
        return Stats(
            count=sum(by_source.values()),
            max_corrections=self.max_corrections,
            by_digit=by_digit,
            by_source=dict(sorted(by_source.items())),
            by_model=dict(sorted(by_model.items())),
            wrong=wrong,
            location=self.where,
        )

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` ("ok" when sound); "ok" on PostgreSQL."""
        if self.dialect != "sqlite":
            return "ok"
        rows = self._read(self._sa.text("PRAGMA integrity_check"))
        return "; ".join(str(r[0]) for r in rows)


def _set_wal(cursor: Any) -> Any:
    """``PRAGMA journal_mode = WAL``, waiting while another connection holds the lock.

    SQLite answers this pragma "database is locked" at once, without its busy handler, when
    another connection is switching the same new file to WAL or writing it: what happens when
    the workers of ``digitlab serve --workers N`` open a fresh store together (one in ten of
    four processes racing, measured). Retried every few ms up to SQLITE_BUSY_TIMEOUT_S.
    """
    import sqlite3

    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            return cursor.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _sqlite_events(sa: Any, engine: Any) -> None:
    """WAL, FULL sync, and BEGIN IMMEDIATE for writes (pysqlite's own BEGIN handling off)."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            mode = _set_wal(cursor)
            if mode and str(mode[0]).lower() != "wal":
                log.warning("SQLite did not switch to WAL (journal_mode=%s)", mode[0])
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        write = conn.get_execution_options().get("digitlab_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def open_store(
    location: str | os.PathLike | None = None, *, max_corrections: int | None = None
) -> FeedbackStore:
    """Open (creating when missing) the feedback store at ``location`` (see
    :func:`resolve_location`)."""
    return FeedbackStore(location, max_corrections=max_corrections)
