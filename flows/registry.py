"""Every flow by name, and serving all of prefect.yaml's deployments from one process."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow, serve
from prefect.schedules import Cron

from flows.feedback_reminders import feedback_reminders
from tutormax.settings import get_settings

FLOWS: dict[str, Flow] = {
    "feedback-reminders": feedback_reminders,
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
                concurrency_limit=entry.get("concurrency_limit"),
            )
        )
    return built


def serve_all(prefect_yaml: Path) -> None:
    """Serve every deployment until interrupted; schedules fire and runs show in the UI."""
    serve(*deployments(prefect_yaml))
