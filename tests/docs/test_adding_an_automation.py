"""docs/adding-an-automation.md, followed to the letter: its blocks applied to a copy of the project, run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tutormax.settings import PROJECT_ROOT

GUIDE = PROJECT_ROOT / "docs" / "adding-an-automation.md"
BLOCK = re.compile(r"^```\w+ (\S+) \((append|new)\)\n(.*?)^```$", re.MULTILINE | re.DOTALL)

# a 16-year-old's session tomorrow at 10:00 EST, and one a week out (outside the window)
PLATFORM = """
from datetime import date, datetime, timedelta, timezone
from db.migrate import upgrade
from db.models import Manager, Student, Tutor, TutoringSession
from db.session import transaction
from tutormax.settings import get_settings

url = get_settings().database_url
upgrade(url)
now = datetime(2026, 11, 20, 15, tzinfo=timezone.utc)
with transaction(url) as s:
    s.add(Manager(id=1, name="Mona Manager", email="mona@example.com"))
    s.flush()
    s.add(Tutor(id=1, name="Ana Rivera", email="ana@example.com", manager_id=1))
    s.add(Student(id=1, name="Mia O'Brien", email="mia@example.com", birth_date=date(2010, 1, 1)))
    s.flush()
    for sid, start in ((1, now + timedelta(hours=24)), (2, now + timedelta(days=7))):
        s.add(TutoringSession(id=sid, tutor_id=1, student_id=1, session_number=2, subject="Algebra",
                              scheduled_start=start, status="scheduled"))
"""


def _apply(copy: Path) -> set[str]:
    touched = set()
    for path, mode, body in BLOCK.findall(GUIDE.read_text()):
        target = copy / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == "new":
            assert not target.exists(), f"the guide creates {path}, which exists already"
            target.write_text(body)
        else:
            target.write_text(target.read_text() + body)
        touched.add(path)
    return touched


def test_the_guide_adds_a_working_automation_in_four_files(tmp_path, prefect_harness, smtp_server):
    from prefect.settings import PREFECT_API_URL

    copy = tmp_path / "project"
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    for name in tracked.stdout.splitlines():
        if (PROJECT_ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, copy / name)
    touched = _apply(copy)
    assert touched == {"db/queries.py", "flows/session_reminders.py", "templates/session_reminder/v1.html",
                       "prefect.yaml"}

    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'guide.db'}", "TUTORMAX_VAR_DIR": str(tmp_path / "var"),
           "PREFECT_API_URL": PREFECT_API_URL.value(), "TIMEZONE": "America/New_York"}

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    run("-c", PLATFORM)
    preview = run("-m", "tutormax.cli", "preview", "session_reminder")
    assert "session_reminder/v1: 'Tomorrow: Algebra with Ana Rivera at 9:00 AM'" in preview
    text = (tmp_path / "var" / "previews" / "session_reminder_v1.txt").read_text()
    assert "Hi Mia," in text and re.search(r"See your sessions: https://track\.tutormax\.example/c/\S+", text)
    assert "see you there." not in text.lower().split("hi mia")[0]  # the hidden preheader stays out

    summary = run("-m", "tutormax.cli", "run", "session-reminders", "--now", "2026-11-20T10:00")
    assert "'planned': 1" in summary and "'sent': 1" in summary
    assert "'covers': 'sessions that start Sat 2026-11-21 06:00 to Sat 2026-11-21 14:00 EST'" in summary
    ((recipients, raw),) = smtp_server.received
    assert recipients == ["mia@example.com"]
    assert b"Subject: Tomorrow: Algebra with Ana Rivera at 10:00 AM" in raw
    again = run("-m", "tutormax.cli", "run", "session-reminders", "--now", "2026-11-20T11:00")
    assert "'planned': 0" in again and len(smtp_server.received) == 1
