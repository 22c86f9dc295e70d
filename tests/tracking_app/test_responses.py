"""One-click feedback stops further reminders; the check-in survey records a tutor's answers."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from db.models import EmailMessage, Feedback, SurveyResponse
from db.session import transaction
from tutormax.tokens import Purpose


def test_feedback_form_and_submission(client, reminder, db_url, token):
    mid, session_id, student = reminder
    url = f"/f/{token(Purpose.FEEDBACK, mid)}"
    page = client.get(url + "?rating=4")
    assert page.status_code == 200 and b'value="4" checked' in page.data
    with transaction(db_url) as s:
        assert s.scalar(select(Feedback)) is None  # GET changes nothing: mail scanners follow links
    assert client.post(url, data={"rating": "9"}).status_code == 400
    done = client.post(url, data={"rating": "4", "comment": "Great explanations"})
    assert done.status_code == 200 and b"Thank you" in done.data
    again = client.post(url, data={"rating": "1"})
    assert b"already have feedback" in again.data
    with transaction(db_url) as s:
        (feedback,) = s.scalars(select(Feedback))
    assert (feedback.session_id, feedback.student_id, feedback.rating, feedback.message_id) == (session_id, student, 4, mid)


def test_feedback_stops_further_reminders(client, reminder, db_url, now, token):
    from datetime import timedelta

    from sqlalchemy import delete

    from db.models import EmailWorkflowState
    from db.queries import due_feedback_reminders

    mid, session_id, _ = reminder

    def due():
        with transaction(db_url) as s:
            s.execute(delete(EmailWorkflowState))  # as if never planned: only feedback keeps a session off the list
        with transaction(db_url) as s:
            return [r.session_id for r in due_feedback_reminders(s, now - timedelta(hours=48), now - timedelta(hours=24))]

    assert due() == [session_id]
    client.post(f"/f/{token(Purpose.FEEDBACK, mid)}", data={"rating": "5"})
    assert due() == []


def _checkin(platform, db_url, enqueue):
    """A check-in email to a tutor about a first session."""
    tutor = platform.tutor()
    session_id = platform.session(tutor, platform.student(), ended_ago=timedelta(hours=3))
    mid = enqueue("tutor@example.com", entity_id=session_id)
    with transaction(db_url) as s:
        s.execute(update(EmailMessage).where(EmailMessage.message_id == mid).values(recipient_id=tutor))
    return mid, tutor, session_id


def test_survey_records_answers_and_flags_concerns(client, platform, db_url, token, enqueue):
    mid, tutor, session_id = _checkin(platform, db_url, enqueue)
    url = f"/s/{token(Purpose.SURVEY, mid)}"
    assert client.get(url).status_code == 200
    assert client.post(url, data={"rating": "4"}).status_code == 400  # engagement missing
    assert client.post(url, data={"rating": "4", "engaged": "yes", "concern": "on", "comment": "Parent seemed upset"}).status_code == 200
    with transaction(db_url) as s:
        (answer,) = s.scalars(select(SurveyResponse))
    assert (answer.tutor_id, answer.session_id, answer.rating, answer.concern, answer.concerning) == \
        (tutor, session_id, 4, True, True)


def test_survey_without_concerns_is_not_concerning(client, platform, db_url, token, enqueue):
    mid, _, _ = _checkin(platform, db_url, enqueue)
    assert client.post(f"/s/{token(Purpose.SURVEY, mid)}", data={"rating": "3", "engaged": "somewhat"}).status_code == 200
    with transaction(db_url) as s:
        assert s.scalar(select(SurveyResponse.concerning)) is False


def test_tracker_announces_a_concerning_answer(client, platform, db_url, enqueue, token, monkeypatch):
    from tracking_app import responses

    emitted = []
    monkeypatch.setattr(responses, "emit_event", lambda **kw: emitted.append(kw))
    monkeypatch.setattr(responses, "get_current_settings",
                        lambda: type("S", (), {"api": type("A", (), {"url": "http://127.0.0.1:4200/api"})()})())
    tutor = platform.tutor()
    session_id = platform.session(tutor, platform.student(), ended_ago=timedelta(hours=3))
    mid = enqueue("tutor@example.com", entity_id=session_id)
    with transaction(db_url) as s:
        s.execute(update(EmailMessage).where(EmailMessage.message_id == mid).values(recipient_id=tutor))
    client.post(f"/s/{token(Purpose.SURVEY, mid)}", data={"rating": "2", "engaged": "somewhat"})
    client.post(f"/s/{token(Purpose.SURVEY, mid)}", data={"rating": "1", "engaged": "no"})  # a second answer
    with transaction(db_url) as s:
        survey_id = s.scalar(select(SurveyResponse.id))
    assert emitted == [{"event": "tutormax.survey.concerning",
                        "resource": {"prefect.resource.id": f"tutormax.survey.{survey_id}"},
                        "payload": {"survey_id": survey_id}}]


def test_head_is_a_get_without_its_body_and_records_nothing(client, reminder, platform, db_url, token, enqueue):
    # link scanners prefetch with HEAD: it shows what GET shows, and only a POST records an answer
    pages = {f"/f/{token(Purpose.FEEDBACK, reminder[0])}": {"rating": "5", "comment": "scanned"},
             f"/s/{token(Purpose.SURVEY, _checkin(platform, db_url, enqueue)[0])}": {"rating": "1", "engaged": "no"}}
    for url, answers in pages.items():
        get, head = client.get(url), client.head(url, data=answers)
        assert (get.status_code, head.status_code, head.data) == (200, 200, b"")
        assert [head.headers[h] for h in ("Content-Type", "Content-Length")] == \
            [get.headers[h] for h in ("Content-Type", "Content-Length")]
    with transaction(db_url) as s:
        assert (s.scalar(select(Feedback)), s.scalar(select(SurveyResponse))) == (None, None)


def test_a_nul_in_a_form_is_refused_and_stores_nothing(client, reminder, db_url, token):
    # PostgreSQL stores no NUL in text: refused up front, not a failed insert (and a 500)
    mid, _, _ = reminder
    url = f"/f/{token(Purpose.FEEDBACK, mid)}"
    assert client.post(url, data={"rating": "5", "comment": "great\x00session"}).status_code == 400
    with transaction(db_url) as s:
        assert s.scalar(select(Feedback)) is None
    assert client.post(url, data={"rating": "5", "comment": "great session"}).status_code == 200
