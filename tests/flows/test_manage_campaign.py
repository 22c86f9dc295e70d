"""manage-campaign: the Prefect UI's run form is the campaign form (pydantic models as parameters)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from db import campaigns
from db.models import EmailCampaign, Tutor
from db.session import transaction
from flows.manage_campaign import Control, manage_campaign
from flows.registry import deployments
from tasks.campaign_control import CampaignForm, Content
from tutormax.settings import PROJECT_ROOT


def test_the_deployments_form_is_the_campaign_form():
    (deployment,) = [d for d in deployments(PROJECT_ROOT / "prefect.yaml") if d.name == "manage-campaign"]
    schema = deployment._parameter_openapi_schema.model_dump()
    assert set(schema["properties"]) == {"create", "control"}
    definitions = schema["definitions"]
    assert set(definitions["CampaignForm"]["properties"]) == {
        "name", "segment", "segment_value", "members_csv", "content", "category", "priority", "at", "ab_test"}
    assert set(definitions["Control"]["properties"]["action"]["enum"]) == {"schedule", "pause", "resume", "cancel"}
    assert definitions["Content"]["properties"]["body_markdown"]["format"] == "text"  # a text area, not a line


def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                            sort=ArtifactSort.CREATED_DESC, limit=1)
    return artifact.data


def test_create_then_pause_resume_and_cancel_from_the_form(prefect_harness, db_url, now):
    with transaction(db_url) as s:
        s.add_all(Tutor(id=i, name=f"T{i}", email=f"t{i}@example.com") for i in range(1, 4))
    at = now + timedelta(days=3)
    created = manage_campaign(create=CampaignForm(name="Holiday hours", segment="all-tutors", at=at,
                                                  content=Content(subject="Holiday hours", body_markdown="Closed.")))
    cid = created["campaign_id"]
    assert created["status"] == "scheduled" and created["preview"]["recipients"] == 3
    assert _artifact("manage-campaign-result").startswith(
        f"# Campaign {cid} created (scheduled)\n\nIt goes to **3** recipient(s) of all-tutors. Excluded: none")
    assert manage_campaign(control=Control(campaign_id=cid, action="pause", reason="hold on"))["held"] == 0
    manage_campaign(control=Control(campaign_id=cid, action="resume"))
    manage_campaign(control=Control(campaign_id=cid, action="cancel"))
    with transaction(db_url) as s:
        assert s.get(EmailCampaign, cid).status == "cancelled"
        assert [(t.to_status, t.actor) for t in campaigns.transitions(s, cid)][-3:] == [
            ("paused", "prefect-ui"), ("scheduled", "prefect-ui"), ("cancelled", "prefect-ui")]
    with pytest.raises(campaigns.CampaignError, match="is cancelled: it cannot be resumed"):
        manage_campaign(control=Control(campaign_id=cid, action="resume"))


def test_the_form_asks_for_one_thing(prefect_harness, db_url):
    with pytest.raises(ValueError, match="fill in either `create`"):
        manage_campaign()
