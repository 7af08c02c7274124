"""The feedback store, the same tests against SQLite and a real PostgreSQL server on loopback.

Also: clear errors for a corrupt file, another schema, a newer schema and an unreachable server;
migrations in one transaction; concurrent writers (threads and processes) losing nothing and
never failing with "database is locked"; a writer killed with SIGKILL mid-write leaving a sound
database that holds every acknowledged row.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitlab.core.errors import DigitlabError
from pgserver import PostgresServer, find_bin_dir

store_mod = pytest.importorskip("digitlab.apps.feedback.store")
FeedbackStore = store_mod.FeedbackStore
NewCorrection = store_mod.NewCorrection
StoreError = store_mod.StoreError
StoreFullError = store_mod.StoreFullError

SRC = Path(__file__).resolve().parents[1] / "src"
_counter = itertools.count()


def png(seed: int, size: int = 40) -> bytes:
    """A distinct small PNG (a random stroke) per seed."""
    rng = np.random.default_rng(seed)
    a = np.zeros((size, size), np.uint8)
    y = rng.integers(5, size - 5)
    a[y : y + 4, 5 : size - 5] = 255
    a[rng.integers(0, size), rng.integers(0, size)] = 128
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def correction(seed: int, label: str = "7", **kw) -> NewCorrection:
    tiles = np.full((len(label), 28, 28), seed % 251, np.uint8)
    return NewCorrection(image=png(seed), label=label, model_input=tiles, **kw)


@pytest.fixture(scope="module")
def pg_server():
    if find_bin_dir() is None:
        msg = "PostgreSQL not installed: run scripts/install-system-deps.sh"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path) -> str:
    """A fresh, empty store location of each kind."""
    if request.param == "sqlite":
        return str(tmp_path / "feedback.sqlite3")
    server = request.getfixturevalue("pg_server")
    return server.create_database(f"fb{next(_counter)}_{os.getpid()}")


def test_add_list_get_delete_roundtrip(location):
    with FeedbackStore(location) as store:
        assert store.count() == 0
        r1 = store.add(correction(1, "3", predicted="8", model_id="m1", source="web"))
        r2 = store.add(correction(2, "2026", predicted="2028", model_id="m1", source="api"))
        assert (r1.duplicate, r1.count, r2.count) == (False, 1, 2)
        assert r2.id > r1.id
        rows = store.list()
        assert [r.label for r in rows] == ["3", "2026"]
        assert rows[0].image is None  # summaries without blobs
        got = store.get(r2.id)
        assert got.image == png(2) and got.predicted == "2028" and got.source == "api"
        assert got.tiles.shape == (4, 28, 28) and got.trainable
        assert int(got.tiles[0, 0, 0]) == 2
        assert store.delete(r1.id) and not store.delete(r1.id)
        assert store.count() == 1 and store.get(r1.id) is None
        r3 = store.add(correction(3))
        assert r3.id > r2.id  # ids are never reused
        assert store.delete_all() == 2 and store.count() == 0


def test_reopen_keeps_rows(location):
    with FeedbackStore(location) as store:
        ids = [store.add(correction(i, str(i % 10))).id for i in range(5)]
    with FeedbackStore(location) as store:
        assert [r.id for r in store.iter_all(batch=2)] == ids
        assert [r.label for r in store.iter_all()] == [str(i) for i in range(5)]


def test_exact_duplicates_are_skipped(location):
    with FeedbackStore(location) as store:
        first = store.add(correction(5, "4"))
        again = store.add(correction(5, "4", source="gui"))
        other_label = store.add(correction(5, "9"))
        assert again.duplicate and again.id == first.id and again.count == 1
        assert not other_label.duplicate and store.count() == 2


def test_size_cap_refuses_with_a_clear_message(location):
    with FeedbackStore(location, max_corrections=3) as store:
        for i in range(3):
            store.add(correction(i))
        with pytest.raises(StoreFullError, match=r"is full: it holds 3 corrections"):
            store.add(correction(99))
        assert store.count() == 3
        assert store.add(correction(0)).duplicate  # a duplicate is not a new row


def test_stats_per_digit_source_model(location):
    with FeedbackStore(location) as store:
        store.add(correction(1, "3", predicted="8", model_id="a", source="web"))
        store.add(correction(2, "3", predicted="3", model_id="a", source="cli"))
        store.add(correction(3, "12", predicted="17", model_id="b", source="web"))
        s = store.stats()
        assert s.count == 3 and s.wrong == 2
        assert s.by_digit["3"] == 2 and s.by_digit["1"] == 1 and s.by_digit["2"] == 1
        assert s.by_source == {"cli": 1, "web": 2}
        assert s.by_model == {"a": 2, "b": 1}


def test_bad_values_are_refused(location):
    with FeedbackStore(location) as store:
        with pytest.raises(DigitlabError, match="label must be a digit"):
            store.add(correction(1, "x"))
        with pytest.raises(DigitlabError, match="source must be one of"):
            store.add(correction(1, "1", source="mail"))
        assert store.count() == 0


def test_concurrent_threads_lose_nothing(location):
    clients, each = 16, 10
    acked: list[int] = []
    errors: list[str] = []
    with FeedbackStore(location) as store:

        def client(k: int) -> None:
            for i in range(each):
                try:
                    acked.append(store.add(correction(k * 1000 + i, str(i % 10))).id)
                except Exception as exc:  # collected: the assertion below names them
                    errors.append(repr(exc))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(set(acked)) == clients * each == store.count()
        assert store.integrity_check() == "ok"


WRITER = textwrap.dedent(
    """
    import io, sys
    import numpy as np
    from PIL import Image
    from digitlab.apps.feedback.store import FeedbackStore, NewCorrection
    store = FeedbackStore(sys.argv[1])
    start, n = int(sys.argv[2]), int(sys.argv[3])
    for i in range(start, start + n):
        a = np.zeros((32, 32), np.uint8); a[i % 32, :] = 255; a[:, (i // 32) % 32] = 200
        buf = io.BytesIO(); Image.fromarray(a).save(buf, format="PNG")
        buf.write(i.to_bytes(8, "little"))  # distinct bytes for every i
        tiles = np.zeros((1, 28, 28), np.uint8)
        r = store.add(NewCorrection(image=buf.getvalue(), label=str(i % 10), model_input=tiles,
                                    source="cli"))
        print(r.id, flush=True)
    """
)


def _writer(location: str, start: int, n: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, location, str(start), str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_concurrent_processes_lose_nothing(location):
    FeedbackStore(location).close()  # created once, then 4 processes write at once
    procs = [_writer(location, k * 100_000, 25) for k in range(4)]
    acked = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "locked" not in err
        acked += [int(x) for x in out.split()]
    with FeedbackStore(location) as store:
        assert len(acked) == 100 == store.count()
        assert {r.id for r in store.list()} == set(acked)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_many_open_a_new_store_at_once(kind, request, tmp_path):
    """The workers of ``digitlab serve --workers N`` open a fresh store together: each must
    open it, none fail. SQLite refuses the switch to WAL at once, without its busy handler,
    while another connection makes it (before the retry, 6 of 360 openers failed); on
    PostgreSQL two openers both found no tables and both created them (53 of 80 failed)."""
    rounds, openers = (60, 6) if kind == "sqlite" else (5, 4)
    errors: list[str] = []
    locations = []
    for round_ in range(rounds):
        if kind == "sqlite":
            location = str(tmp_path / f"new{round_}.sqlite3")
        else:
            server = request.getfixturevalue("pg_server")
            location = server.create_database(f"race{next(_counter)}_{os.getpid()}")
        locations.append(location)
        start = threading.Barrier(openers)

        def open_store(location: str = location, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                FeedbackStore(location).close()
            except StoreError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=open_store) for _ in range(openers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    with FeedbackStore(locations[0]) as store:
        assert store.count() == 0


def test_sigkill_mid_write_keeps_every_acknowledged_row(location):
    FeedbackStore(location).close()
    proc = _writer(location, 0, 100_000)
    acked = []
    deadline = time.monotonic() + 60
    while len(acked) < 40 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(int(line))
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=30)
    acked += [int(x) for x in rest.split()]  # acknowledged before the kill, read late
    assert len(acked) >= 40, proc.stderr
    with FeedbackStore(location) as store:
        assert store.integrity_check() == "ok"
        stored = {r.id for r in store.list()}
        assert set(acked) <= stored
        assert len(stored) <= len(acked) + 1  # at most the one in flight was committed unseen


# --------------------------------------------------------------------------------------------
# Errors naming the store
# --------------------------------------------------------------------------------------------


def test_corrupt_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "feedback.sqlite3"
    bad.write_bytes(b"this is not a database at all, just some text" * 100)
    with pytest.raises(StoreError, match=rf"{bad}: not a SQLite database, or corrupt"):
        FeedbackStore(bad)
    assert bad.read_bytes().startswith(b"this is not a database")  # left as it was


def test_database_of_another_schema_is_refused(tmp_path):
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    with pytest.raises(StoreError, match=r"holds other tables \(invoices\)"):
        FeedbackStore(other)
    with sqlite3.connect(other) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert names == ["invoices"]  # nothing half-written


def test_newer_schema_is_refused(tmp_path):
    import sqlite3

    path = tmp_path / "f.sqlite3"
    FeedbackStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE digitlab_meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        FeedbackStore(path)


def test_migration_runs_in_one_transaction(tmp_path, monkeypatch):
    import sqlite3

    path = tmp_path / "f.sqlite3"
    with FeedbackStore(path) as store:
        store.add(correction(1))
    version = store_mod.SCHEMA_VERSION

    def failing(conn):
        conn.exec_driver_sql("ALTER TABLE digitlab_corrections ADD COLUMN note TEXT")
        raise RuntimeError("migration broke half-way")

    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", version + 1)
    monkeypatch.setitem(store_mod.MIGRATIONS, version, failing)
    with pytest.raises(RuntimeError, match="half-way"):
        FeedbackStore(path)
    with sqlite3.connect(path) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(digitlab_corrections)")]
        v = conn.execute("SELECT value FROM digitlab_meta WHERE key='schema_version'").fetchone()
    assert "note" not in cols and v[0] == str(version)  # rolled back entirely

    def adding(conn):
        conn.exec_driver_sql("ALTER TABLE digitlab_corrections ADD COLUMN note TEXT")

    monkeypatch.setitem(store_mod.MIGRATIONS, version, adding)
    with FeedbackStore(path) as store:
        assert store.count() == 1
    with sqlite3.connect(path) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(digitlab_corrections)")]
        v = conn.execute("SELECT value FROM digitlab_meta WHERE key='schema_version'").fetchone()
    assert "note" in cols and v[0] == str(version + 1)


def test_unreachable_server_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    url = f"postgresql://someone:secret@127.0.0.1:{port}/feedback"
    with pytest.raises(StoreError, match=r"cannot reach the server") as info:
        FeedbackStore(url)
    assert f"127.0.0.1:{port}/feedback" in str(info.value)
    assert "secret" not in str(info.value)


def test_other_tables_in_postgres_are_refused(pg_server):
    import psycopg

    url = pg_server.create_database(f"other{os.getpid()}")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id serial primary key)")
    with pytest.raises(StoreError, match=r"holds other tables \(orders\)"):
        FeedbackStore(url)


def test_directory_and_unsupported_url(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        FeedbackStore(tmp_path)
    with pytest.raises(StoreError, match="unsupported database 'mysql'"):
        FeedbackStore("mysql://x@localhost/db")


def test_default_location_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(store_mod.ENV_FEEDBACK_DB, raising=False)
    with FeedbackStore() as store:
        assert Path(store.where) == tmp_path / "home" / "feedback.sqlite3"
    monkeypatch.setenv(store_mod.ENV_FEEDBACK_DB, str(tmp_path / "env.db"))
    with FeedbackStore() as store:
        store.add(correction(1))
    assert (tmp_path / "env.db").exists()


# --------------------------------------------------------------------------------------------
# The command line: digitlab feedback ...
# --------------------------------------------------------------------------------------------


def test_cli_add_list_stats_export_import_delete(tmp_path, monkeypatch, mnist, capsys):
    from digitlab.apps.cli import main
    from digitlab.training.kaggle_csv import load_kaggle_csv

    monkeypatch.setenv("DIGITLAB_HOME", str(tmp_path / "home"))
    db = ["--feedback-db", str(tmp_path / "fb.sqlite3")]
    files = tmp_path / "in"
    (files / "3").mkdir(parents=True)
    for i in range(3):
        img = Image.fromarray(255 - mnist.test_images[i]).resize((112, 112))
        img.save(files / f"{mnist.test_labels[i]}_{i}.png")
    Image.fromarray(255 - mnist.test_images[3]).resize((112, 112)).save(files / "3" / "x.png")
    (files / "notes.txt").write_text("not an image")

    first = files / f"{mnist.test_labels[0]}_0.png"
    assert main(["feedback", "add", str(first), "5", *db]) == 0
    out = capsys.readouterr().out
    assert f"label 5 (model said {mnist.test_labels[0]}) stored as correction 1" in out
    assert main(["feedback", "import", str(files), *db]) == 0
    assert "imported 4 correction(s)" in capsys.readouterr().out
    assert main(["feedback", "import", str(files), *db]) == 0
    assert "imported 0 correction(s)" in capsys.readouterr().out  # all exact duplicates

    assert main(["feedback", "list", "--json", *db]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["source"] for r in rows] == ["cli"] * 5
    expected = ["5", "3", *(str(mnist.test_labels[i]) for i in range(3))]  # folder "3" names x
    assert sorted(r["label"] for r in rows) == sorted(expected)
    assert main(["feedback", "stats", "--json", *db]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["count"] == 5 and stats["by_source"] == {"cli": 5}

    assert main(["feedback", "export", str(tmp_path / "out"), *db]) == 0
    pngs = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.png"))
    assert len(pngs) == 5 and Path("5/1.png") in pngs
    assert Image.open(tmp_path / "out" / "5" / "1.png").size == (28, 28)
    assert main(["feedback", "export", str(tmp_path / "all.csv"), *db]) == 0
    images, labels = load_kaggle_csv(tmp_path / "all.csv")
    assert images.shape == (5, 28, 28) and labels[0] == 5
    # what export writes, import reads back (into another store)
    other = ["--feedback-db", str(tmp_path / "other.sqlite3")]
    assert main(["feedback", "import", str(tmp_path / "out"), *other]) == 0
    assert "imported 5 correction(s)" in capsys.readouterr().out

    assert main(["feedback", "delete", "1", "99", *db]) == 1
    captured = capsys.readouterr()
    assert "no correction with id 99" in captured.err and "4 left" in captured.out
    assert main(["feedback", "delete", "--all", *db]) == 0
    assert "deleted 4" in capsys.readouterr().out
    assert main(["feedback", "delete", *db]) == 2
    assert "name the corrections to delete" in capsys.readouterr().err


def test_cli_errors_name_the_problem(tmp_path, capsys):
    from digitlab.apps.cli import main

    bad = tmp_path / "corrupt.db"
    bad.write_bytes(b"garbage" * 200)
    assert main(["feedback", "stats", "--feedback-db", str(bad)]) == 2
    assert f"{bad}: not a SQLite database" in capsys.readouterr().err
    db = ["--feedback-db", str(tmp_path / "f.db")]
    assert main(["feedback", "add", str(tmp_path / "missing.png"), "1", *db]) == 2
    assert "missing.png: cannot be read" in capsys.readouterr().err
    assert main(["feedback", "add", str(bad), "x", *db]) == 2
    assert "label must be a digit" in capsys.readouterr().err
    (tmp_path / "t.png").write_bytes(b"not a png")
    assert main(["feedback", "add", str(tmp_path / "t.png"), "1", *db]) == 2
    assert "not a recognised image" in capsys.readouterr().err
