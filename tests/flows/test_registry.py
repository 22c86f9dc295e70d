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
    assert set(built) == {d["name"] for d in spec["deployments"]}
    reminders = built["feedback-reminders"]
    (schedule,) = reminders.schedules
    assert schedule.schedule.cron == "0 * * * *"
    assert schedule.schedule.timezone == "Europe/London"
    assert reminders.parameters == {"dry_run": False}
    assert {"now", "dry_run"} <= set(reminders._parameter_openapi_schema.properties)
    assert set(FLOWS) == set(built)
    from tutormax.cli import FLOW_NAMES
    assert set(FLOW_NAMES) == set(FLOWS)
    (trigger,) = built["checkin-escalations"].triggers
    assert trigger.expect == {"tutormax.survey.concerning"}
    assert trigger.parameters == {"survey_id": "{{ event.payload.survey_id }}"}
    crons = {name: d.schedules[0].schedule.cron for name, d in built.items()}
    assert crons["weekly-digests"] == "0 9 * * 1" and crons["manager-digests"] == "0 8 * * 1"
    assert crons["rescheduling-alerts"] == "0 10 * * *" and crons["first-session-checkins"] == "*/30 * * * *"
    assert crons["cleanup-old-tracking-events"] == "0 2 * * 0" and crons["monthly-summaries"] == "0 9 1 * *"
    assert built["cleanup-old-tracking-events"].parameters == {"days_to_keep": 90, "dry_run": False}
