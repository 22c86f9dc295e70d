"""Engines and transaction scopes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from tutormax.settings import get_settings


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the tracker read while a delivery batch writes; busy_timeout makes
    # concurrent writers wait instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn) -> None:
    # BEGIN IMMEDIATE takes the write lock up front, so two claimers serialize
    # instead of deadlocking on a read-then-write upgrade.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine(url: str | None = None) -> Engine:
    """One engine per database URL for the life of the process (default: Settings' URL)."""
    return _engine(url or get_settings().database_url)


@lru_cache(maxsize=8)
def _engine(url: str, pre_ping: bool = True) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        # take transaction control from pysqlite so BEGIN IMMEDIATE is ours
        event.listen(engine, "connect", lambda c, r: setattr(c, "isolation_level", None))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # values_plus_batch: executemany UPDATEs (delivery outcomes) go in pages, not a round trip per row
    # connect_timeout: a database that does not answer fails fast instead of hanging a request or a task
    return create_engine(url, pool_pre_ping=pre_ping, pool_size=5, max_overflow=5, executemany_mode="values_plus_batch",
                         connect_args={"connect_timeout": 5})


@lru_cache(maxsize=8)
def session_factory(url: str, pre_ping: bool = True) -> sessionmaker[Session]:
    """Sessions bound to the engine for url.

    pre_ping=False saves a round trip a request (the tracker): a connection that died with a
    database restart then fails once, the pool replaces it, and the event goes to the journal.
    """
    return sessionmaker(_engine(url, pre_ping), expire_on_commit=False)


@contextmanager
def transaction(url: str | None = None) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on error."""
    session = session_factory(url or get_settings().database_url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def without_waiting_for_disk(session: Session) -> None:
    """This transaction's commit returns before its WAL reaches disk (PostgreSQL; SQLite's WAL mode already does).

    For writes whose loss in a database crash is already covered: delivery outcomes, whose
    messages a lost record sends again after the claim's lease, with the same Message-ID. The
    commit costs a fraction of a millisecond instead of a disk flush, so outcomes commit in small
    groups and a killed worker leaves few unrecorded; a crash of the worker alone loses nothing
    committed.
    """
    if is_postgres(session):
        session.execute(text("SET LOCAL synchronous_commit = off"))
