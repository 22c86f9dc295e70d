"""The analytics JSON API, behind a bearer token.

The spec's `/preferences/{email}` and `/unsubscribe/{email}` put an address in
the URL, where proxies and logs keep it; here the address travels in the JSON
body instead (POST /preferences/lookup, PUT /preferences, POST /unsubscribe).
"""

from __future__ import annotations

import hmac
from datetime import datetime, timezone
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import Blueprint, abort, current_app, jsonify, request
from db import analytics, campaigns, tracking
from db.events import Category
from db.models import EmailCampaign
from tracking_app.recording import db, now
from tutormax.metrics import COUNTS, rates_of

bp = Blueprint("api", __name__, url_prefix="/api/email-analytics")


@bp.before_request
def _require_token():
    """Every API route needs the bearer token; without it, 401 and nothing else."""
    expected = current_app.config["SETTINGS"].analytics_api_token.get_secret_value()
    given = request.headers.get("Authorization", "")
    if not expected or not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
        response = jsonify(error="unauthorized", detail="send Authorization: Bearer <ANALYTICS_API_TOKEN>")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="email-analytics"'
        abort(response)


EVERYTHING = (datetime(1970, 1, 1, tzinfo=timezone.utc), datetime(9999, 1, 1, tzinfo=timezone.utc))


def _metrics(**filters: str) -> dict[str, Any]:
    """The same counts and rates (fractions, None without a denominator) the analytics report shows."""
    frame = analytics.message_counts(db(), *EVERYTHING, **filters)
    counts = {k: int(frame[k].sum()) if len(frame) else 0 for k in COUNTS}
    return {"counts": counts, "rates": rates_of(counts)}


def _campaign(campaign_id: str) -> EmailCampaign:
    campaign = campaigns.by_id(db(), campaign_id[:64])
    if campaign is None:
        abort(404)
    return campaign


def _count(value: str) -> int:
    """A non-negative whole number from a query string: ASCII digits only, and small enough for a BIGINT."""
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        abort(400)
    return int(value)


@bp.get("/campaigns")
def campaign_list():
    """Every campaign, newest first, with its counts (read from its messages)."""
    listed = campaigns.newest(db())
    counted = campaigns.counts_of(db(), listed)
    return {"campaigns": [campaigns.describe(db(), c, counted[c.campaign_id], full=False) for c in listed]}


@bp.get("/campaigns/<campaign_id>")
def campaign(campaign_id: str):
    """One campaign: its counts, who was excluded and why, its history, and the live rates from its messages."""
    c = _campaign(campaign_id)
    return {"campaign": campaigns.describe(db(), c), **_metrics(campaign_id=c.campaign_id)}


@bp.get("/campaigns/<campaign_id>/messages")
def campaign_messages(campaign_id: str):
    """A page of a campaign's messages (?after=<message_id>&limit=<n<=500>)."""
    c = _campaign(campaign_id)
    after, limit = _count(request.args.get("after", "0")), _count(request.args.get("limit", "100"))
    rows = campaigns.messages_page(db(), c.campaign_id, after, min(limit, 500))
    messages = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r._mapping.items()} for r in rows]
    return {"messages": messages, "next_after": messages[-1]["message_id"] if messages else None}


@bp.get("/campaigns/<campaign_id>/ab-test")
def campaign_ab_test(campaign_id: str):
    """Per-variant counts and the verdict the statistics support (clicks decide; see tasks/abtest.py)."""
    from tasks.abtest import VariantStats, compare

    c = _campaign(campaign_id)
    frame = analytics.message_counts(db(), *EVERYTHING, campaign_id=c.campaign_id)
    per_variant = frame.groupby("ab_variant")[list(COUNTS)].sum() if len(frame) else frame
    variants = {v: {k: int(row[k]) for k in COUNTS} for v, row in per_variant.iterrows()}
    body: dict[str, Any] = {"campaign_id": c.campaign_id, "ab_test_enabled": c.ab_test_enabled,
                            "variants": {v: {"counts": counts, "rates": rates_of(counts)} for v, counts in variants.items()}}
    if {"a", "b"} <= set(variants):
        stats = {v: VariantStats(variant=v, sent=n["attempted"], delivered=n["delivered"], human_opens=n["opened_human"],
                                 clicks=n["clicked_human"]) for v, n in variants.items()}
        body["result"] = compare(stats["a"], stats["b"], weights={"a": c.ab_variant_a_weight,
                                                                 "b": c.ab_variant_b_weight}).__dict__
    return body


@bp.get("/metrics/overall")
def metrics_overall():
    """Headline delivery and engagement figures over every message."""
    return _metrics()


@bp.get("/metrics/template/<template_type>")
def metrics_template(template_type: str):
    """The same figures for one template type."""
    return {"template_type": template_type[:50], **_metrics(template_type=template_type[:50])}


def _email_from_body() -> tuple[str, dict[str, Any]]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("email"), str):
        abort(400)
    try:
        return validate_email(body["email"], check_deliverability=False).normalized.lower(), body
    except EmailNotValidError:
        abort(400)


def _preferences_json(email: str) -> dict[str, Any]:
    pref = tracking.preference(db(), email)
    values = {c.value: getattr(pref, c.value) if pref else True for c in Category}
    return {"email": email, "unsubscribed_all": bool(pref and pref.unsubscribed_all),
            "suppressed": bool(pref and pref.suppressed), **values}


@bp.post("/preferences/lookup")
def preferences_lookup():
    """One address's preferences; the address is in the body, never the URL."""
    email, _ = _email_from_body()
    return _preferences_json(email)


@bp.put("/preferences")
def preferences_update():
    """Change an address's categories and unsubscribe-all."""
    email, body = _email_from_body()
    fields = {c.value for c in Category} | {"unsubscribed_all"}
    values = {k: v for k, v in body.items() if k in fields}
    if not values or not all(isinstance(v, bool) for v in values.values()):
        abort(400)
    if "unsubscribed_all" in values:
        values["unsubscribed_at"] = now() if values["unsubscribed_all"] else None
    tracking.set_preferences(db(), email, values, now())
    db().commit()
    return _preferences_json(email)


@bp.post("/unsubscribe")
def unsubscribe():
    """Unsubscribe an address from everything."""
    email, _ = _email_from_body()
    tracking.set_preferences(db(), email, {"unsubscribed_all": True, "unsubscribed_at": now()}, now())
    db().commit()
    return _preferences_json(email)
