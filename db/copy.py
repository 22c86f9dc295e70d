"""PostgreSQL COPY into a temporary table: the bulk path for writes of thousands of rows.

A multi-row INSERT of 1,000 rows is megabytes of SQL text that the client
builds and the server parses; COPY streams the same rows as tab-separated text
at a tenth of the cost. Callers then insert or update from the temporary table
in one statement. The table is created once per connection and emptied at
every commit: no DDL, and no catalog churn, per write.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from db.types import naive_utc

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _field(value: Any) -> str:
    """One value in COPY's text format."""
    if value is None:
        return "\\N"
    kind = type(value)
    if kind is str:  # the usual cases first, by exact type: this runs for every value of millions of rows
        return value.translate(_ESCAPES)
    if kind is int:
        return str(value)
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return naive_utc(value).isoformat(" ")
    if isinstance(value, (dict, list)):
        return json.dumps(value).translate(_ESCAPES)
    return str(value)


def copy_into_temp(session: Session, table: str, columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[Any]]) -> None:
    """COPY rows into the temporary table (name, SQL type pairs), in the session's transaction."""
    cursor = session.connection().connection.cursor()
    try:
        definition = ", ".join(f"{name} {sql_type}" for name, sql_type in columns)
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({definition}) ON COMMIT DELETE ROWS")
        cursor.execute(f"DELETE FROM {table}")  # a second bulk write in one transaction starts empty
        # a JSON value many rows share (a campaign's metadata) is encoded once; the entry keeps the value
        # alive, so its id cannot be reused by another dict while this copy runs
        documents: dict[int, tuple[Any, str]] = {}

        def field(value: Any) -> str:
            if type(value) is dict:
                known = documents.get(id(value))
                if known is None:
                    known = documents[id(value)] = (value, _field(value))
                return known[1]
            return _field(value)

        data = "".join("\t".join(map(field, row)) + "\n" for row in rows)
        cursor.copy_expert(f"COPY {table} FROM STDIN WITH (ENCODING 'UTF8')", io.BytesIO(data.encode("utf-8")))
    finally:
        cursor.close()
