"""Flow fixtures: run a flow under the Prefect harness and read back what it wrote, sent and published."""

from __future__ import annotations

import email
from dataclasses import dataclass
from datetime import datetime
from email import policy
from typing import Any

import pytest
from sqlalchemy import select

from db.models import EmailMessage
from db.session import transaction


@dataclass(frozen=True)
class FlowRun:
    """A finished flow run as the Prefect API has it."""

    result: dict[str, Any]  # what the flow returned
    name: str               # the run's name
    summary: str            # the markdown of the run's "<flow>-summary" artifact

    @property
    def figures(self) -> dict[str, Any]:
        """The result without the render time, the one figure that differs from run to run."""
        return {k: v for k, v in self.result.items() if k != "render_ms_p50"}

    @property
    def heading(self) -> str:
        """The summary's text before its first table: the run's time, what it covered, its parameters."""
        return self.summary.split("\n\n|", 1)[0]


@pytest.fixture
def run_flow(prefect_harness, smtp_server):
    """run_flow(flow, **parameters): run it to completion; its result, run name and summary artifact.

    Mail goes to the test's SMTP server, never to whatever listens on the configured port.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    def run(flow, **parameters) -> FlowRun:
        state = flow(**parameters, return_state=True)
        result = state.result()  # raises if the run failed
        flow_run_id = state.state_details.flow_run_id
        with get_client(sync_client=True) as client:
            name = client.read_flow_run(flow_run_id).name
            (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                key=ArtifactFilterKey(any_=[f"{flow.name}-summary"])))
        return FlowRun(result, name, artifact.data)

    return run


@pytest.fixture
def outbox(db_url):
    """outbox(): every message as (template type, recipient type, address, status, skip reason), sorted."""

    def read() -> list[tuple]:
        with transaction(db_url) as s:
            rows = s.execute(select(EmailMessage.template_type, EmailMessage.recipient_type,
                                    EmailMessage.recipient_email, EmailMessage.status, EmailMessage.skip_reason))
            return sorted((tuple(r) for r in rows), key=lambda row: [(v is not None, v) for v in row])

    return read


@pytest.fixture
def received(smtp_server):
    """received(): what the SMTP server accepted, as (recipient, subject), sorted."""

    def read() -> list[tuple[str, str]]:
        out = []
        for recipients, raw in smtp_server.received:
            (recipient,) = recipients
            out.append((recipient, email.message_from_bytes(raw, policy=policy.default)["Subject"]))
        return sorted(out)

    return read


@pytest.fixture
def summary_of():
    """summary_of(flow, now, covers, dry_run=..., **figures): what a sending flow returns (less the render time),
    every figure not given being 0."""

    def build(flow: str, now: datetime, covers: str, *, dry_run: bool = False, **figures: int) -> dict[str, Any]:
        zeros = dict.fromkeys(("planned", "skipped", "already_planned", "sent", "deferred", "failed", "bounced",
                               "blocked", "withdrawn"), 0)
        return {"flow": flow, "now": now.isoformat(), "explicit_now": True, "covers": covers, "dry_run": dry_run,
                **zeros, **figures, "delivery_error": None}

    return build


@pytest.fixture
def waiting(enqueue):
    """Another automation's message queued in the outbox, a feedback reminder: a flow sends its own types only.
    Its row as outbox() shows it."""
    enqueue("waiting@example.com")
    return "feedback_reminder", "student", "waiting@example.com", "queued", None


@pytest.fixture
def heading_of():
    """heading_of(flow, at, covers, dry_run=...): a sending flow's summary heading (FlowRun.heading), the run's
    local time `at` written as it shows there, "Fri 2026-11-20 10:00 EST"."""

    def build(flow: str, at: str, covers: str, *, dry_run: bool = False) -> str:
        return f"# {flow}, {at}\n\nCovers {covers}.\n\nParameters: `dry_run={dry_run}`, `now={at.split(' ', 1)[1]}`."

    return build
