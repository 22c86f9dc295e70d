"""The db_url fixture really gives both databases, and UTC columns round-trip aware datetimes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from db.models import Manager, Tutor
from db.session import get_engine, transaction


def test_both_backends_are_real(db_url, request):
    assert get_engine().dialect.name == request.node.callspec.params["db_url"]
    assert get_engine().url.render_as_string() == db_url or get_engine().dialect.name == "postgresql"


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
