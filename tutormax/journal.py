"""The tracker's local journal: events that could not reach the database, ingested later, once."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DataError, IntegrityError

log = logging.getLogger(__name__)


class Journal:
    """Append-only JSON lines; each event carries a unique event_key, so ingesting twice is harmless.

    Appends hold a shared lock on the file and ingests an exclusive one, so a line is never written
    into a file an ingest has already read (and then deletes). Lines the database refuses, and torn
    lines, are set aside in rejected.*.jsonl for an operator rather than dropped or retried forever.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "events.jsonl"

    def append(self, event: dict[str, Any]) -> None:
        """Write one event durably before the tracker answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(event, default=_encode, separators=(",", ":")) + "\n").encode()
        while True:
            # one write() on an O_APPEND descriptor: lines from several workers never interleave
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                # an ingest may have renamed the file between our open and our lock: then write to
                # the fresh file at the path, never into one that is being read
                if _same_file(fd, self.path):
                    os.write(fd, line)
                    os.fsync(fd)
                    return
            finally:
                os.close(fd)

    def pending(self) -> list[Path]:
        return sorted(self.folder.glob("events*.jsonl*")) if self.folder.exists() else []

    def rejected(self) -> list[Path]:
        return sorted(self.folder.glob("rejected.*.jsonl")) if self.folder.exists() else []

    def ingest(self, url: str | None = None) -> dict[str, int]:
        """Move journaled events into the database; a file is deleted only after its commit."""
        counts = {"files": 0, "events": 0, "inserted": 0, "unreadable": 0, "rejected": 0}
        if not self.folder.exists():
            return counts
        with _locked(self.folder / "ingest.lock", fcntl.LOCK_EX):  # one ingest at a time
            if self.path.exists():
                # new appends go to a fresh file while this one is ingested
                taken = self.folder / f"events.{time.time_ns()}.jsonl.ingesting"
                self.path.rename(taken)
                with _locked(taken, fcntl.LOCK_EX):
                    pass  # appends begun before the rename have finished their line
            for path in sorted(self.folder.glob("events.*.jsonl.ingesting")):
                self._ingest_file(path, url, counts)
        return counts

    def _ingest_file(self, path: Path, url: str | None, counts: dict[str, int]) -> None:
        from db.session import transaction

        events, refused = [], []
        for line in path.read_text(errors="replace").splitlines():
            try:
                events.append((line, _decode(json.loads(line))))
            except (ValueError, KeyError, TypeError):
                counts["unreadable"] += 1  # a torn last line from a crash mid-write
                refused.append(line)
        with transaction(url) as session:  # OperationalError: the file stays, the next ingest retries it
            for line, event in events:
                try:
                    with session.begin_nested():
                        counts["inserted"] += _ingest_one(session, event)
                except (IntegrityError, DataError):
                    # e.g. a message no longer in the database: one such line must not hold back the rest
                    counts["rejected"] += 1
                    refused.append(line)
        if refused:
            kept = self.folder / f"rejected.{time.time_ns()}.jsonl"
            kept.write_text("".join(f"{line}\n" for line in refused))
            log.warning("journal: %d line(s) set aside in %s", len(refused), kept.name)
        counts["files"] += 1
        counts["events"] += len(events)
        path.unlink()


def _ingest_one(session, event: dict[str, Any]) -> bool:
    from db import tracking
    from tracking_app.classify import too_soon_after_the_fact

    if event.pop("kind", "event") == "unsubscribe":
        return _unsubscribe_once(session, event)
    # journaled while the database was down, the event was classified without the message's sent_at
    message = tracking.message(session, event["message_id"])
    later = too_soon_after_the_fact(event["event_type"], event.get("machine_reason"),
                                    message.sent_at if message else None, event["event_time"])
    if later is not None:
        event.update(is_machine=later.is_machine, machine_reason=later.reason)
    return tracking.record_event(session, event)


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


@contextmanager
def _locked(path: Path, how: int) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, how)
        yield
    finally:
        os.close(fd)


def _unsubscribe_once(session, request_: dict[str, Any]) -> bool:
    from db import tracking

    return False if tracking.event_seen(session, request_["event_key"]) else tracking.apply_unsubscribe(session, request_)


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
