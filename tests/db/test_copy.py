"""COPY into a temporary table (PostgreSQL): every value comes back as it went in."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from db.copy import copy_into_temp
from db.session import transaction


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_values_round_trip_and_a_shared_document_is_encoded_once(db_url, monkeypatch):
    from db import copy

    shared = {"campaign_id": "c1", "variant": "a"}
    encoded = []
    real = copy._field
    monkeypatch.setattr(copy, "_field", lambda v: (encoded.append(v) if type(v) is dict else None) or real(v))
    at = datetime(2026, 12, 2, 9, 30, tzinfo=timezone.utc)

    def row(i):  # odd rows share one document, even rows have one each

        return i, f"tab\there {i}\\ and\nnewline", None, True, at, shared if i % 2 else {"row": i}

    rows = [row(i) for i in range(200)]
    with transaction(db_url) as s:
        copy_into_temp(s, "copy_check", [("i", "integer"), ("txt", "text"), ("n", "text"), ("b", "boolean"),
                                         ("at", "timestamp"), ("doc", "jsonb")], (row(i) for i in range(200)))
        back = s.execute(text("SELECT i, txt, n, b, at, doc FROM copy_check ORDER BY i")).all()
    assert [(r.i, r.txt, r.n, r.b, r.doc) for r in back] == [(i, t, n, b, doc) for i, t, n, b, _, doc in rows]
    assert back[0].at == at.replace(tzinfo=None)
    assert sum(1 for d in encoded if d is shared) == 1 and len(encoded) == 101
    assert json.loads(json.dumps(shared)) == back[1].doc
