"""A transaction on SQLite that reads before it writes (``count_refusal``'s get_or_create)
is not refused "database is locked" when another connection commits in between: an import
counted the refusals of its batches on one thread while the next batch committed on another,
and lost one to three of them a run (the busy timeout never applies to a read transaction
that must become a write one). Transactions take the write lock when they begin."""

from __future__ import annotations

import sqlite3

from django.db import connections, transaction

from nccid.web.settings import _database

ALIAS = "reads_first"


def test_a_transaction_that_read_first_writes_after_another_connection(tmp_path,
                                                                       django_db_blocker):
    path = tmp_path / "nccid.sqlite3"
    config = _database(f"sqlite:///{path}")
    connections.settings[ALIAS] = {**connections.settings["default"], "NAME": str(path),
                                   "OPTIONS": config["OPTIONS"], "TEST": {}}
    try:
        with django_db_blocker.unblock():
            ours = connections[ALIAS]
            ours.cursor().execute("CREATE TABLE refused (n INTEGER)")
            with transaction.atomic(using=ALIAS):
                ours.cursor().execute("SELECT count(*) FROM refused")  # (get_or_create's get)
                other = sqlite3.connect(path, timeout=0)  # (another thread's connection)
                try:
                    other.execute("INSERT INTO refused VALUES (1)")
                    other.commit()
                except sqlite3.OperationalError:
                    pass  # it waits for ours to end (with the busy timeout it would)
                finally:
                    other.close()
                ours.cursor().execute("INSERT INTO refused VALUES (2)")  # (then the create)
            assert ours.cursor().execute("SELECT n FROM refused").fetchall()[-1] == (2,)
    finally:
        connections[ALIAS].close()
        del connections[ALIAS]
        del connections.settings[ALIAS]
