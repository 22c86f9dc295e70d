"""Alembic: upgrade, downgrade and upgrade again on both databases; models and migrations agree."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from db.migrate import downgrade, upgrade
from db.models import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def scratch_db(request, tmp_path, scratch_pg_database):
    """A database with nothing in it."""
    return f"sqlite:///{tmp_path / 'scratch.db'}" if request.param == "sqlite" else scratch_pg_database()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(scratch_db):
    upgrade(scratch_db)
    assert _tables(scratch_db) == set(Base.metadata.tables)
    downgrade(scratch_db)
    assert _tables(scratch_db) == set()
    upgrade(scratch_db)
    assert _tables(scratch_db) == set(Base.metadata.tables)


def test_models_match_migrations(migrated_urls):
    for url in migrated_urls.values():
        engine = create_engine(url)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        engine.dispose()
        assert diff == [], f"models and migrations differ on {engine.dialect.name}: {diff}"


def test_every_selection_has_an_index(migrated_urls):
    engine = create_engine(migrated_urls["postgresql"])
    indexed = {
        table: {tuple(ix["column_names"]) for ix in inspect(engine).get_indexes(table)}
        | {tuple(uc["column_names"]) for uc in inspect(engine).get_unique_constraints(table)}
        for table in ("tutoring_sessions", "email_messages", "email_workflow_state", "feedback", "email_preferences")
    }
    engine.dispose()
    assert ("status", "ended_at") in indexed["tutoring_sessions"]
    assert {("tutor_id", "scheduled_start"), ("student_id", "scheduled_start")} <= indexed["tutoring_sessions"]
    assert ("submitted_at",) in indexed["feedback"]
    assert ("priority", "message_id") in indexed["email_messages"]  # the claim order, unfinished messages only
    assert ("idempotency_key",) in indexed["email_messages"]
    assert ("workflow_type", "entity_type", "entity_id", "step") in indexed["email_workflow_state"]
    assert ("session_id",) in indexed["feedback"]
    assert ("email",) in indexed["email_preferences"]


def test_the_claim_can_walk_the_partial_due_index(migrated_urls):
    """The claim's "due" condition must imply the index's predicate, or PostgreSQL scans the whole table."""
    from datetime import datetime, timezone

    from sqlalchemy import select, text

    from db.models import EmailMessage
    from db.outbox import _due

    now = datetime.now(timezone.utc)
    query = (select(EmailMessage.message_id).where(_due(now, now))
             .order_by(EmailMessage.priority, EmailMessage.message_id).limit(500).with_for_update(skip_locked=True))
    engine = create_engine(migrated_urls["postgresql"])
    with engine.connect() as conn:
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):  # a tiny table: ask for the index
            conn.execute(text(f"SET {setting} = off"))
        compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
        plan = "\n".join(row[0] for row in conn.execute(text(f"EXPLAIN {compiled}")))
    engine.dispose()
    assert "ix_email_messages_due" in plan and "Sort" not in plan, plan


def test_the_queue_reads_only_the_partial_due_index(migrated_urls):
    """`tutormax queue` and deliver-outbox's artifact run every minute: never a scan of every message ever sent."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import event, text
    from sqlalchemy.orm import Session

    from db import queue

    engine = create_engine(migrated_urls["postgresql"])
    statements = []

    def keep(conn, cursor, sql, params, context, many):
        statements.append((sql, params))

    event.listen(engine, "before_cursor_execute", keep)
    now = datetime.now(timezone.utc)
    with Session(engine) as session:
        queue.state(session, now, now, timedelta(minutes=15))
    event.remove(engine, "before_cursor_execute", keep)
    statements = [(sql, params) for sql, params in statements if sql.lstrip().upper().startswith("SELECT")]
    with engine.connect() as conn:
        for setting in ("enable_seqscan", "enable_bitmapscan"):  # a tiny table: ask for the index
            conn.execute(text(f"SET {setting} = off"))
        plans = [" ".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql, params)) for sql, params in statements]
    engine.dispose()
    assert len(plans) == 6
    *unfinished, held = plans
    for plan in unfinished:
        assert "Seq Scan" not in plan and "ix_email_messages_due" in plan, plan
    # held mail (paused campaigns') is out of the due index: reached through the campaigns, by the campaign index
    assert "Seq Scan on email_messages" not in held and "ix_email_messages_campaign" in held, held
