"""Responses: one-click session feedback and the first-session check-in survey."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request
from prefect.events import emit_event
from prefect.settings import get_current_settings
from sqlalchemy.exc import IntegrityError

from db import tracking
from tracking_app.recording import db, now, token_or_404
from tutormax.tokens import Purpose

bp = Blueprint("responses", __name__)

ENGAGEMENT = ("yes", "somewhat", "no")
CONCERN_EVENT = "tutormax.survey.concerning"


def _message(purpose: Purpose, token: str):
    data = token_or_404(purpose, token)
    message = tracking.message(db(), data.message_id)
    if message is None or "session_id" not in (message.message_metadata or {}):
        abort(404)
    return message


def _rating(value: str | None) -> int | None:
    return int(value) if value in {"1", "2", "3", "4", "5"} else None


def announce_concern(survey_id: int) -> None:
    """Tell Prefect a concerning answer arrived; the escalation deployment's trigger picks it up.

    Best effort by design: if the event is lost, the escalation flow's scheduled sweep finds the answer.
    """
    if not get_current_settings().api.url:
        return  # no Prefect server configured: emitting would start a temporary one in this worker
    try:
        emit_event(event=CONCERN_EVENT, resource={"prefect.resource.id": f"tutormax.survey.{survey_id}"},
                   payload={"survey_id": survey_id})
    except Exception:  # the answer is stored; never fail the tutor's request over a notification
        current_app.logger.warning("could not emit %s for survey %s; the sweep will escalate it", CONCERN_EVENT, survey_id)


@bp.route("/f/<token>", methods=["GET", "POST"])
def feedback(token: str):
    """GET and HEAD show the rating form (a star in the email preselects it; scanners fetch too); POST records it."""
    message = _message(Purpose.FEEDBACK, token)
    meta = message.message_metadata
    if request.method != "POST":  # only a POST records: HEAD is a GET without its body
        return render_template("feedback.html", token=token, rating=_rating(request.args.get("rating")),
                               student=meta.get("student_name"), tutor=meta.get("tutor_name"))
    rating = _rating(request.form.get("rating"))
    if rating is None:
        return render_template("feedback.html", token=token, rating=None, error="Please choose 1 to 5 stars.",
                               student=meta.get("student_name"), tutor=meta.get("tutor_name")), 400
    comment = (request.form.get("comment") or "").strip()[:2000] or None
    try:
        fresh = tracking.record_feedback(db(), session_id=meta["session_id"], student_id=message.recipient_id,
                                         rating=rating, comment=comment, message_id=message.message_id, at=now())
        db().commit()
    except IntegrityError:  # the session is gone from the platform
        db().rollback()
        abort(404)
    return render_template("message.html", title="Thank you!",
                           body="Your feedback is in." if fresh else "We already have feedback for this session. Thank you!")


@bp.route("/s/<token>", methods=["GET", "POST"])
def survey(token: str):
    """The tutor's three-question check-in after a first session."""
    message = _message(Purpose.SURVEY, token)
    meta = message.message_metadata
    if request.method != "POST":  # only a POST records: HEAD is a GET without its body
        return render_template("survey.html", token=token, student=meta.get("student_name"), error=None)
    rating = _rating(request.form.get("rating"))
    engaged = request.form.get("engaged")
    if rating is None or engaged not in ENGAGEMENT:
        return render_template("survey.html", token=token, student=meta.get("student_name"),
                               error="Please answer the first two questions."), 400
    concern = request.form.get("concern") == "on"
    answers = {
        "message_id": message.message_id, "tutor_id": message.recipient_id, "session_id": meta["session_id"],
        "rating": rating, "student_engaged": engaged, "concern": concern,
        "comment": (request.form.get("comment") or "").strip()[:2000] or None,
        # the definition of "concerning" lives here so escalation and reports agree
        "concerning": rating <= 2 or concern or engaged == "no", "submitted_at": now()}
    try:
        survey_id = tracking.record_survey(db(), answers)
        db().commit()
    except IntegrityError:
        db().rollback()
        abort(404)
    fresh = survey_id is not None
    if fresh and answers["concerning"]:
        announce_concern(survey_id)
    return render_template("message.html", title="Thanks for checking in",
                           body="Your answers are in." if fresh else "We already have your answers. Thank you!")
