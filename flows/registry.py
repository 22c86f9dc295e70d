"""Every flow by name, and serving all of prefect.yaml's deployments from one process."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow, serve
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron

from flows.checkin_escalations import checkin_escalations
from flows.cleanup_old_tracking_events import cleanup_old_tracking_events
from flows.email_analytics import email_analytics
from flows.feedback_invitations import feedback_invitations
from flows.feedback_reminders import feedback_reminders
from flows.first_session_checkins import first_session_checkins
from flows.manager_digests import manager_digests
from flows.monthly_summaries import monthly_summaries
from flows.performance_reports import performance_reports
from flows.rescheduling_alerts import rescheduling_alerts
from flows.weekly_digests import weekly_digests
from tutormax.settings import get_settings

FLOWS: dict[str, Flow] = {
    "feedback-invitations": feedback_invitations,
    "feedback-reminders": feedback_reminders,
    "first-session-checkins": first_session_checkins,
    "checkin-escalations": checkin_escalations,
    "rescheduling-alerts": rescheduling_alerts,
    "weekly-digests": weekly_digests,
    "manager-digests": manager_digests,
    "monthly-summaries": monthly_summaries,
    "performance-reports": performance_reports,
    "cleanup-old-tracking-events": cleanup_old_tracking_events,
    "email-analytics": email_analytics,
}


def load_flow(entrypoint: str) -> Flow:
    """flows/feedback_reminders.py:feedback_reminders -> the flow object."""
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def deployments(prefect_yaml: Path) -> list[Any]:
    """RunnerDeployments for every entry in prefect.yaml, on TIMEZONE (so 9:00 stays 9:00 across DST)."""
    spec = yaml.safe_load(prefect_yaml.read_text())
    timezone = get_settings().timezone
    built = []
    for entry in spec["deployments"]:
        flow = load_flow(entry["entrypoint"])
        schedules = [Cron(s["cron"], timezone=timezone) for s in entry.get("schedules", [])]
        built.append(
            flow.to_deployment(
                name=entry["name"],
                description=entry.get("description"),
                tags=entry.get("tags"),
                parameters={k: v for k, v in (entry.get("parameters") or {}).items() if v is not None},
                schedules=schedules,
                triggers=[DeploymentEventTrigger(**{k: v for k, v in t.items() if k != "type"})
                          for t in entry.get("triggers", [])],
                concurrency_limit=entry.get("concurrency_limit"),
            )
        )
    return built


def serve_all(prefect_yaml: Path) -> None:
    """Serve every deployment until interrupted; schedules fire and runs show in the UI."""
    serve(*deployments(prefect_yaml))
