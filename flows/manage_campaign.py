"""Manage a campaign from the Prefect UI: its run form creates one (scheduled if given a time), or controls one."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from tasks import campaign_control
from tasks.campaign_control import CampaignForm
from tasks.plan_campaigns import preview
from tutormax.settings import get_settings

ACTOR = "prefect-ui"


class Control(BaseModel):
    """Schedule, pause, resume or cancel a campaign that exists."""

    campaign_id: str = Field(description="as `tutormax campaign list` and the campaign's artifacts show it")
    action: Literal["schedule", "pause", "resume", "cancel"]
    at: datetime | None = Field(None, description="schedule: when (empty: now)")
    reason: str | None = Field(None, description="pause, cancel: kept with the change")
    override_guard: bool = Field(False, description="resume a campaign the reputation guard paused, having looked")


def run_name() -> str:
    """"manage-campaign create Spring hours" or "manage-campaign pause spring-hours-3f9a1c"."""
    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    control, form = parameters.get("control"), parameters.get("create")
    what = (f"{control['action']} {control['campaign_id']}" if isinstance(control, dict)
            else f"create {form['name']}" if isinstance(form, dict) else "nothing asked")
    at = datetime.now(timezone.utc).astimezone(get_settings().tz)
    return f"manage-campaign {what} {at:%Y-%m-%d %H:%M %Z}"


@flow(name="manage-campaign", flow_run_name=run_name)
def manage_campaign(create: CampaignForm | None = None, control: Control | None = None) -> dict[str, Any]:
    """Create a campaign (fill in `create`) or control one (fill in `control`); the result is in the artifact."""
    if (create is None) == (control is None):
        raise ValueError("fill in either `create` (a new campaign) or `control` (one that exists), not both or neither")
    now = datetime.now(timezone.utc)
    if create is not None:
        campaign = campaign_control.create(create, actor=ACTOR, now=now)
        found = preview(campaign.campaign_id, now)
        result = {"campaign_id": campaign.campaign_id, "status": campaign.status, "preview": found}
        excluded = "".join(f"\n- {reason}: {n:,}" for reason, n in found["excluded"].items()) or " none"
        markdown = (f"# Campaign {campaign.campaign_id} created ({campaign.status})\n\n"
                    f"It goes to **{found['recipients']:,}** recipient(s) of {campaign.segment}. Excluded:{excluded}\n")
    else:
        assert control is not None
        action = control.action
        if action == "schedule":
            campaign = campaign_control.schedule(control.campaign_id, control.at, actor=ACTOR, now=now)
            result = {"campaign_id": control.campaign_id, "status": campaign.status,
                      "scheduled_at": campaign.scheduled_at.isoformat()}
        elif action == "pause":
            held = campaign_control.pause(control.campaign_id, actor=ACTOR, now=now, reason=control.reason)
            result = {"campaign_id": control.campaign_id, "status": "paused", "held": held}
        elif action == "resume":
            released = campaign_control.resume(control.campaign_id, actor=ACTOR, now=now,
                                               override_guard=control.override_guard)
            result = {"campaign_id": control.campaign_id, "status": "resumed", "released": released}
        else:
            skipped = campaign_control.cancel(control.campaign_id, actor=ACTOR, now=now, reason=control.reason)
            result = {"campaign_id": control.campaign_id, "status": "cancelled", "skipped": skipped}
        markdown = f"# Campaign {control.campaign_id}: {action}\n\n" + "".join(
            f"- {k}: {v}\n" for k, v in result.items() if k != "campaign_id")
    create_markdown_artifact(key="manage-campaign-result", markdown=markdown, description="manage-campaign result")
    return result
