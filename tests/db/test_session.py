"""The db_url fixture really gives both databases, and UTC columns round-trip aware datetimes."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from db.models import Manager, Tutor
from db.session import get_engine, transaction


def _connected_to(engine) -> str:
    """The database the engine's connections are really in: PostgreSQL's name for it, or SQLite's file."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            return conn.execute(text("SELECT current_database()")).scalar()
        return conn.execute(text("PRAGMA database_list")).one().file


def test_both_backends_are_real(db_url, request, tmp_path_factory):
    backend = request.node.callspec.params["db_url"]
    engine = get_engine()  # what Settings point at
    assert engine.url.render_as_string(hide_password=False) == db_url
    # this session's own migrated database on each backend, through the driver the project ships
    own = {"sqlite": ("sqlite", "pysqlite", str(tmp_path_factory.getbasetemp() / "db0" / "test.db")),
           "postgresql": ("postgresql", "psycopg2", f"tutormax_test_{os.getpid()}")}
    assert (engine.dialect.name, engine.driver, _connected_to(engine)) == own[backend]


def test_utc_round_trip_and_naive_refused(db_url):
    at = datetime(2026, 3, 8, 7, 30, tzinfo=timezone(timedelta(hours=-5)))
    with transaction() as s:
        s.add(Manager(id=1, name="M", email="m@example.com"))
        s.add(Tutor(id=1, name="T", email="t@example.com", manager_id=1, created_at=at))
    with transaction() as s:
        assert s.get(Tutor, 1).created_at == at and s.get(Tutor, 1).created_at.tzinfo == timezone.utc
    with pytest.raises(Exception, match="naive"):
        with transaction() as s:
            s.add(Tutor(id=2, name="T2", email="t2@example.com", created_at=datetime(2026, 1, 1)))


def test_a_transaction_can_skip_waiting_for_the_disk_on_postgresql_only(db_url):
    from db.session import is_postgres, without_waiting_for_disk

    with transaction(db_url) as s:
        without_waiting_for_disk(s)
        if is_postgres(s):
            assert s.scalar(text("SHOW synchronous_commit")) == "off"
    with transaction(db_url) as s:  # SET LOCAL: the next transaction waits for the disk again
        if is_postgres(s):
            assert s.scalar(text("SHOW synchronous_commit")) == "on"
