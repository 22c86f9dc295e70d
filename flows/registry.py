"""prefect.yaml is the one list of deployments: every flow by name, and serving them all from one process."""

from __future__ import annotations

import importlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tutormax.settings import PROJECT_ROOT, get_settings

if TYPE_CHECKING:
    from prefect import Flow

PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"


def deployment_specs(prefect_yaml: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The deployments as prefect.yaml writes them (no flow is imported)."""
    return yaml.safe_load(prefect_yaml.read_text())["deployments"]


def load_flow(entrypoint: str) -> Flow:
    """flows/feedback_reminders.py:feedback_reminders -> the flow object."""
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


@lru_cache(maxsize=1)
def load_all_flows() -> dict[str, Flow]:
    """Every deployment's flow by deployment name (importing a flow's module declares its email types)."""
    return {spec["name"]: load_flow(spec["entrypoint"]) for spec in deployment_specs()}


def deployments(prefect_yaml: Path = PREFECT_YAML) -> list[Any]:
    """RunnerDeployments for every entry in prefect.yaml, on TIMEZONE (so 9:00 stays 9:00 across DST)."""
    from prefect.events import DeploymentEventTrigger
    from prefect.schedules import Cron

    timezone = get_settings().timezone
    built = []
    for entry in deployment_specs(prefect_yaml):
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


def serve_all(prefect_yaml: Path = PREFECT_YAML) -> None:
    """Serve every deployment until interrupted; schedules fire and runs show in the UI."""
    from prefect import serve

    serve(*deployments(prefect_yaml))
