"""prefect.yaml: every deployment loads, with its schedule in TIMEZONE and its parameters."""

from __future__ import annotations

import yaml

from flows.registry import deployments, load_all_flows
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
    assert set(reminders._parameter_openapi_schema.properties) == {"now", "dry_run", "batch_size"}
    assert set(load_all_flows()) == set(built)
    (trigger,) = built["checkin-escalations"].triggers
    assert trigger.expect == {"tutormax.survey.concerning"}
    assert trigger.parameters == {"survey_id": "{{ event.payload.survey_id }}"}
    crons = {name: d.schedules[0].schedule.cron for name, d in built.items() if d.schedules}
    assert crons["scheduled-campaigns"] == "*/15 * * * *" and not built["manage-campaign"].schedules
    assert crons["weekly-digests"] == "0 9 * * 1" and crons["manager-digests"] == "0 8 * * 1"
    assert crons["rescheduling-alerts"] == "0 10 * * *" and crons["first-session-checkins"] == "*/30 * * * *"
    assert crons["cleanup-old-tracking-events"] == "0 2 * * 0" and crons["monthly-summaries"] == "0 9 1 * *"
    assert built["cleanup-old-tracking-events"].parameters == {"days_to_keep": 90, "dry_run": False}


def test_schedules_keep_the_local_hour_across_dst():
    """The server computes runs from the deployment's cron and zone: 09:00 stays 09:00 local."""
    import asyncio
    import inspect
    from datetime import datetime, timezone

    from prefect.server.schemas.schedules import CronSchedule

    get_settings.cache_clear()
    weekly = next(d for d in deployments(PROJECT_ROOT / "prefect.yaml") if d.name == "weekly-digests")
    spec = weekly.schedules[0].schedule
    dates = CronSchedule(cron=spec.cron, timezone=spec.timezone).get_dates(
        n=3, start=datetime(2026, 10, 20, tzinfo=timezone.utc))
    dates = asyncio.run(dates) if inspect.iscoroutine(dates) else dates
    assert [d.hour for d in dates] == [9, 9, 9]
    assert [d.astimezone(timezone.utc).hour for d in dates] == [13, 14, 14]  # EDT, then EST


def test_every_scheduled_flow_takes_now_and_the_cli_knows_which_have_a_dry_run():
    import inspect

    scheduled = {spec["name"] for spec in yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())["deployments"]
                 if spec.get("schedules")}
    assert set(load_all_flows()) - scheduled == {"manage-campaign"}  # an operator's form, run by hand
    for name in scheduled:
        parameters = inspect.signature(load_all_flows()[name].fn).parameters
        assert "now" in parameters, name
        assert ("dry_run" in parameters) == (name != "email-analytics"), name
