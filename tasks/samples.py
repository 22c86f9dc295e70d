"""Sample message metadata for every template type: the preview command and the template tests use it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

NOW = datetime(2026, 11, 23, 14, tzinfo=timezone.utc)
_SESSIONS = [{"date": "2026-11-17", "counterpart": "Ms. Rivera", "subject": "Algebra", "minutes": 60},
             {"date": "2026-11-19", "counterpart": "Ms. Rivera", "subject": "Geometry", "minutes": 45}]
_WEEK = {"period_start": "2026-11-16", "period_end": "2026-11-22", "period_label": "week of November 16"}
_SESSION = {"session_id": 1, "student_name": "Mia O'Brien", "tutor_name": "Ana Rivera", "subject_name": "Algebra",
            "session_ended_at": (NOW - timedelta(hours=26)).isoformat(), "is_parent": False}

SAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    # template type: (recipient name, stored metadata)
    "feedback_invitation": ("Mia O'Brien", _SESSION),
    "feedback_reminder": ("Mia O'Brien", _SESSION),
    "first_session_checkin": ("Ana Rivera", {"session_id": 1, "tutor_name": "Ana Rivera", "student_name": "Mia",
                                             "subject_name": "Algebra",
                                             "session_ended_at": (NOW - timedelta(hours=2)).isoformat()}),
    "rescheduling_alert": ("Ana Rivera", {"tutor_name": "Ana Rivera", "reschedules_7d": 3, "reschedules_14d": 4}),
    "intervention_notification": ("Sam Lee", {"reason": "reschedules", "manager_name": "Sam Lee",
                                              "tutor_name": "Ana Rivera", "student_name": None, "survey_rating": None,
                                              "survey_comment": None, "reschedules_7d": 4, "reschedules_14d": 7}),
    "weekly_digest": ("Ana Rivera", {"tutor_name": "Ana Rivera", "audience": "tutor", **_WEEK, "sessions_completed": 2,
                                     "no_shows": 1, "reschedules": 1, "average_rating": 4.5, "feedback_count": 2,
                                     "highlights": ["Clear and patient!"], "sessions": _SESSIONS,
                                     "total_minutes": 105}),
    "parent_notification": ("Pat O'Brien", {"student_name": "Mia", "is_parent": True, "kind": "weekly_digest", **_WEEK,
                                            "sessions_completed": 2, "no_shows": 0, "reschedules": 0,
                                            "average_rating": None, "feedback_count": 0, "highlights": [],
                                            "sessions": _SESSIONS, "audience": "student"}),
    "manager_digest": ("Sam Lee", {"manager_name": "Sam Lee", **_WEEK,
                                   "tutors": [{"name": "Ana Rivera", "sessions_completed": 12, "average_rating": 4.8,
                                               "reschedules": 0, "no_shows": 0, "flags": []},
                                              {"name": "Ben Cho", "sessions_completed": 7, "average_rating": 3.1,
                                               "reschedules": 4, "no_shows": 2,
                                               "flags": ["4 reschedules", "2 no-shows", "average rating 3.1"]}],
                                   "escalations": [{"tutor_name": "Ben Cho", "student_name": "Leo", "rating": 2,
                                                    "comment": "Student seemed lost.",
                                                    "submitted_at": (NOW - timedelta(days=2)).isoformat()}]}),
    "monthly_summary": ("Mia O'Brien", {"student_name": "Mia O'Brien", "is_parent": False, "month_label": "October 2026",
                                        "period_start": "2026-10-01", "period_end": "2026-10-31",
                                        "sessions_completed": 8, "total_minutes": 420, "tutors": ["Ana Rivera"],
                                        "subjects": ["Algebra", "Geometry"]}),
    "performance_report": ("Ana Rivera", {"tutor_name": "Ana Rivera", "month_label": "October 2026",
                                          "period_start": "2026-10-01", "period_end": "2026-10-31",
                                          "metrics": [{"label": "Sessions completed", "value": "42", "previous": "38",
                                                       "trend": "up", "good": True},
                                                      {"label": "Average rating", "value": "4.70", "previous": "—",
                                                       "trend": "new", "good": True},
                                                      {"label": "No-show rate", "value": "5%", "previous": "3%",
                                                       "trend": "up", "good": False}]}),
}
