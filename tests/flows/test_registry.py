"""prefect.yaml: every deployment loads, with its schedule in TIMEZONE and its parameters."""

from __future__ import annotations

import yaml

from flows.registry import FLOWS, deployments
from tutormax.settings import PROJECT_ROOT, get_settings


def test_prefect_yaml_builds_every_deployment(monkeypatch):
    monkeypatch.setenv("TIMEZONE", "Europe/London")
    get_settings.cache_clear()
    built = {d.name: d for d in deployments(PROJECT_ROOT / "prefect.yaml")}
    get_settings.cache_clear()
    spec = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    assert set(built) == {d["name"] for d in spec["deployments"]} >= {"feedback-reminders"}
    reminders = built["feedback-reminders"]
    (schedule,) = reminders.schedules
    assert schedule.schedule.cron == "0 * * * *"
    assert schedule.schedule.timezone == "Europe/London"
    assert reminders.parameters == {"dry_run": False}
    assert {"now", "dry_run"} <= set(reminders._parameter_openapi_schema.properties)
    assert set(FLOWS) >= {"feedback-reminders"}
