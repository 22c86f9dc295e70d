"""Reading the bounce mailbox: each report parsed, recorded once, acted on by the rules, then marked read."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from prefect import task
from prefect.tasks import exponential_backoff
from sqlalchemy.exc import DataError, IntegrityError

from db import reports, suppressions
from db.events import SuppressionSource
from db.session import transaction
from tasks.bounce_mailbox import MailboxError, open_mailbox
from tasks.bounce_parse import ParsedReport, parse
from tasks.retry import DATABASE_DOWN, retry_on
from tutormax.logs import run_logger
from tutormax.settings import get_settings
from tutormax.verp import verp_for


def lines(parsed: ParsedReport, raw: bytes, received_at: datetime) -> list[reports.Incoming]:
    """A parsed report as the lines db.reports records: one per recipient (one, empty, when it names none)."""
    source = SuppressionSource.ARF if parsed.kind == "complaint" else SuppressionSource.DSN
    text = raw.decode("utf-8", "replace").replace("\x00", "")  # no database stores a NUL in text
    common = {"source": source, "report_id": parsed.report_id, "raw": text, "received_at": received_at,
              "message_id": parsed.message_id, "original_message_id": parsed.original_message_id,
              "detector": parsed.detector}
    if not parsed.recipients:
        return [reports.Incoming(kind=parsed.kind, recipient="", **common)]
    if parsed.feedback_type:  # a complaint's words: what kind of report the mailbox provider sent
        return [reports.Incoming(kind=r.kind, recipient=r.address.replace("\x00", ""),
                                 diagnostic=f"Feedback-Type: {parsed.feedback_type}", **common)
                for r in parsed.recipients]
    return [reports.Incoming(kind=r.kind, recipient=r.address.replace("\x00", ""), action=r.action, status=r.status,
                             diagnostic=(r.diagnostic or "").replace("\x00", "") or None, **common)
            for r in parsed.recipients]


@task(name="process-bounce-mailbox", retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=10),
      retry_jitter_factor=0.5, retry_condition_fn=retry_on(MailboxError, *DATABASE_DOWN))
def process_mailbox(now: datetime, dry_run: bool = False) -> dict[str, Any]:
    """Every unread report, a page at a time: parsed, recorded once, acted on, committed, then marked read."""
    settings = get_settings()
    counts: Counter[str] = Counter()
    mailbox = open_mailbox(settings)
    if mailbox is None:
        return {"mailbox": None, "counts": {}}
    verp, rule = verp_for(settings.bounce_address, settings.secret_bytes()), reports.Rules.of(settings)
    with mailbox:
        for page in mailbox.pages():
            parsed = [(fetched, parse(fetched.raw, verp, settings.from_domain)) for fetched in page]
            counts["reports"] += len(parsed)
            if dry_run:
                counts.update(p.kind for _, p in parsed)
                continue
            refused = []
            page_lines = [(fetched, lines(report, fetched.raw, now)) for fetched, report in parsed]
            with transaction() as session:
                try:
                    with session.begin_nested():
                        counts.update(reports.apply(session, [line for _, ls in page_lines for line in ls], rule, now))
                except (IntegrityError, DataError):
                    # one report the database refuses must not hold back the rest: one at a time, then
                    for fetched, ls in page_lines:
                        try:
                            with session.begin_nested():
                                counts.update(reports.apply(session, ls, rule, now))
                        except (IntegrityError, DataError) as exc:
                            counts["refused"] += 1
                            refused.append(fetched)
                            run_logger().error("bounce report %s refused by the database (%s); it stays unread",
                                               fetched.key, type(exc).__name__)
            # marked read only once committed: a run that dies here reads the page again, and records nothing twice
            mailbox.done([fetched for fetched in page if fetched not in refused])
    run_logger().info("bounce mailbox: %s", dict(counts))
    where = settings.bounce_imap_host or settings.bounce_maildir
    return {"mailbox": where, "counts": dict(counts)}


@task(name="lift-expired-suppressions", retries=2, retry_delay_seconds=10, retry_condition_fn=retry_on(*DATABASE_DOWN))
def lift_expired(now: datetime) -> int:
    """Suppressions for a spell of soft bounces end when their time is up."""
    with transaction() as session:
        return suppressions.lift_expired(session, now)
