"""The tracker's local journal: events that could not reach the database, ingested later, once."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError


class Journal:
    """Append-only JSON lines; each event carries a unique event_key, so ingesting twice is harmless."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "events.jsonl"

    def append(self, event: dict[str, Any]) -> None:
        """Write one event durably before the tracker answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(event, default=_encode, separators=(",", ":")) + "\n").encode()
        # one write() on an O_APPEND descriptor: lines from several workers never interleave
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def pending(self) -> list[Path]:
        return sorted(self.folder.glob("events*.jsonl*")) if self.folder.exists() else []

    def ingest(self, url: str | None = None) -> dict[str, int]:
        """Move journaled events into the database; a file is deleted only after its commit."""
        from db import tracking
        from db.session import transaction

        counts = {"files": 0, "events": 0, "inserted": 0, "unreadable": 0}
        if self.path.exists():
            # new appends go to a fresh file while this one is ingested
            self.path.rename(self.folder / f"events.{time.time_ns()}.jsonl.ingesting")
        for path in sorted(self.folder.glob("events.*.jsonl.ingesting")):
            events = []
            for line in path.read_text(errors="replace").splitlines():
                try:
                    events.append(_decode(json.loads(line)))
                except (ValueError, KeyError, TypeError):
                    counts["unreadable"] += 1  # a torn last line from a crash mid-write
            try:
                with transaction(url) as session:
                    for event in events:
                        if event.pop("kind", "event") == "unsubscribe":
                            counts["inserted"] += _unsubscribe_once(session, event)
                        else:
                            counts["inserted"] += tracking.record_event(session, event)
            except SQLAlchemyError:
                raise  # the file stays; the next ingest retries it
            counts["files"] += 1
            counts["events"] += len(events)
            path.unlink()
        return counts


def _unsubscribe_once(session, request_: dict[str, Any]) -> bool:
    from db import tracking
    from tracking_app.prefs import apply_unsubscribe

    return False if tracking.event_seen(session, request_["event_key"]) else apply_unsubscribe(session, request_)


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"__datetime__": value.isoformat()}
    raise TypeError(f"cannot journal {type(value).__name__}")


def _decode(event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if isinstance(value, dict) and "__datetime__" in value:
            event[key] = datetime.fromisoformat(value["__datetime__"])
    if not event.get("event_key") or "message_id" not in event:
        raise KeyError("event_key")
    return event
