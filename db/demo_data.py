"""Deterministic demo platform: managers, tutors, students, sessions, feedback and reschedules.

`generate_platform` fills an empty, migrated database (SQLite or PostgreSQL) with a tutoring
platform that looks like the real thing to the email flows:

* managers each own an even share of the tutors; a few tutors joined during the window;
* students are mostly 13-19, ~10% are under 13 (mostly with a consenting parent, some without
  consent or without a parent address, some without an address of their own), some are adults;
* pairings begin and end all through the window at a steady rate, so `session_number == 1`
  happens every day and sessions per day stay flat up to `now` and a few days past it (those
  are `scheduled`); numbering starts at 1 with the first session inside the window;
* a few brand-new pairings have a first session that ended 2-4 hours before `now`, so the
  first-session check-in has work whatever hour `now` is;
* sessions start at after-school hours in the student's own time zone (mostly US zones, DST
  included), never double-book a tutor, and are mostly completed with some no-shows and
  cancellations;
* ~60% of completed sessions get feedback, never dated after `now`;
* ~8% of sessions were rescheduled, and ~5% of tutors reschedule habitually (several a week).

The same seed, `now` and size always give the same rows: one `random.Random(seed)` drives
everything and nothing reads the clock. Rows are written with Core `insert()` in chunks with
explicit primary keys, streaming tutor by tutor, so a million sessions fit in bounded memory.
"""

from __future__ import annotations

import random
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from itertools import accumulate
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Table, func, insert, select, text
from sqlalchemy.orm import Session

from db.events import EventType, SessionStatus
from db.models import (
    EmailPreference,
    EmailTrackingEvent,
    Feedback,
    Manager,
    RescheduleEvent,
    Student,
    Tutor,
    TutoringSession,
)
from db.session import get_engine

__all__ = ["PlatformSize", "generate_platform"]

CHUNK = 5_000  # rows per executemany: big enough to amortise round trips, small enough for memory

DAY = 86_400
HOUR = 3_600
MINUTE = 60


@dataclass(frozen=True)
class PlatformSize:
    """How big the generated platform is; `days` is the history window before `now`."""

    managers: int = 12
    tutors: int = 200
    students: int = 2000
    sessions: int = 20000
    days: int = 60

    def __post_init__(self) -> None:
        for name in ("managers", "tutors", "students", "sessions"):
            if getattr(self, name) < 0:
                raise ValueError(f"PlatformSize.{name} must be >= 0")
        if self.days < 1:
            raise ValueError("PlatformSize.days must be >= 1")
        if self.sessions and (self.tutors < 1 or self.students < 1):
            raise ValueError("sessions need at least one tutor and one student")
        if self.tutors and self.managers < 1:
            raise ValueError("tutors need at least one manager")

    @classmethod
    def for_sessions(cls, sessions: int, *, days: int = 60) -> PlatformSize:
        """A platform as busy per person as the default one (~12 sessions a week per tutor) with `sessions` sessions."""
        base = cls()
        # scale by sessions per day, so a shorter window does not overload each tutor
        factor = (sessions / days) / (base.sessions / base.days)
        return cls(
            managers=max(1, round(base.managers * factor)),
            tutors=max(1, round(base.tutors * factor)),
            students=max(1, round(base.students * factor)),
            sessions=sessions,
            days=days,
        )


# --- embedded vocabularies -----------------------------------------------------
# Accents, apostrophes, hyphens and multi-word surnames are deliberate: templates and
# address handling should meet them in the demo before they meet them in production.

ADULT_FIRST = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Carlos", "Karen",
    "Daniel", "Lisa", "Matthew", "Nancy", "Anthony", "Sandra", "Mark", "Ashley", "Priya", "Wei",
    "Aisha", "Omar", "Fatima", "Hiroshi", "Yuki", "Olga", "Dmitri", "Ngozi", "Kwame", "José",
    "María", "Renée", "Zoë", "Siobhan", "Rahul", "Anjali", "Kenji", "Mei", "Ana", "Luis",
    "Grace", "Samuel", "Hannah", "Benjamin", "Rachel", "Jamal", "Keisha", "Andre", "Tamika", "Marcus",
)
STUDENT_FIRST = (
    "Emma", "Liam", "Olivia", "Noah", "Ava", "Elijah", "Sophia", "Mateo", "Isabella", "Lucas",
    "Mia", "Ethan", "Amelia", "Aiden", "Harper", "Jayden", "Evelyn", "Carter", "Abigail", "Leo",
    "Chloé", "Santiago", "Zara", "Aarav", "Ananya", "Mohammed", "Layla", "Kai", "Nia", "Malik",
    "Imani", "Diego", "Valentina", "Hana", "Ren", "Yusuf", "Maya", "Jackson", "Aaliyah", "Owen",
    "Scarlett", "Caleb", "Luna", "Gabriel", "Sofía", "Elena", "Isaac", "Nora", "Mason", "Ellie",
    "Julian", "Hazel", "Xavier", "Riley", "Mary-Kate", "Jean-Luc", "Tariq", "Amara", "Kenzo", "Ingrid",
)
LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
    "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts",
    "Patel", "Kim", "Chen", "Wang", "Singh", "Okafor", "Mensah", "Kowalski", "Novak", "O'Connor",
    "O'Brien", "De La Cruz", "Núñez", "Müller", "Søndergaard", "Yamamoto", "Haddad", "Cohen", "Rossi", "Ivanova",
)

ELEMENTARY_SUBJECTS = ("Elementary Math", "Reading & Phonics", "Writing Skills", "Science Explorers")
UPPER_SUBJECTS = (
    "Algebra I", "Algebra II", "Geometry", "Pre-Calculus", "Calculus", "Statistics", "Biology", "Chemistry",
    "Physics", "English Literature", "Essay Writing", "SAT Math", "SAT Reading & Writing", "ACT Prep",
    "Spanish", "French", "US History", "Computer Science",
)

# Mostly US zones (Phoenix and Honolulu skip DST), plus a few students abroad whose
# after-school hours land in the US morning.
ZONES = (
    ("America/New_York", 44), ("America/Chicago", 25), ("America/Denver", 7), ("America/Phoenix", 2),
    ("America/Los_Angeles", 17), ("Pacific/Honolulu", 1), ("Europe/London", 2), ("Asia/Singapore", 2),
)

COMMENTS = {
    5: ("Great session, thank you!", "Finally understood it. So patient!", "Loved the practice problems.",
        "Best tutor I've had.", "Super clear explanations.", "My grade went up already!"),
    4: ("Good session, a bit rushed at the end.", "Helpful, would like more examples.",
        "Nice, but we started a few minutes late.", "Solid review before my test."),
    3: ("Okay, but hard to follow at times.", "Fine. Covered less than I hoped.",
        "Some parts were useful."),
    2: ("Tutor seemed unprepared.", "We ran out of time for my questions.", "Connection problems most of the session."),
    1: ("Audio kept cutting out; not useful.", "Tutor was very late.", "Did not help at all."),
}
RATING_CUM = list(accumulate((3, 5, 12, 30, 50)))  # 1..5 stars, skewed high like real ratings

YOUNG_AGES = (6, 7, 8, 9, 10, 11, 12)
YOUNG_AGE_CUM = list(accumulate((1, 1, 2, 3, 4, 5, 6)))  # tutoring picks up towards middle school

DURATIONS = (30, 45, 60, 90)
DURATION_CUM = list(accumulate((15, 25, 45, 15)))
YOUNG_DURATION_CUM = list(accumulate((45, 40, 15, 0)))  # young children rarely sit through 90 minutes
WEEKDAY_HOURS = (14, 15, 16, 17, 18, 19, 20)
WEEKDAY_HOUR_CUM = list(accumulate((4, 10, 18, 22, 20, 16, 10)))
WEEKEND_HOURS = (9, 10, 11, 12, 13, 14, 15, 16, 17)
START_MINUTES = (0, 0, 0, 0, 30, 30, 15, 45)

# Where to move a session that would double-book its tutor: the same evening first, then the
# day before or after; a tutor with no gap in all of these is simply overbooked that day.
SHIFTS = tuple(k * 1800 for k in (1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6)) + tuple(
    d * DAY + k * 1800 for d in (1, -1, 2, -2) for k in (0, 1, -1, 2, -2, 3, -3))

HABITUAL_PER_WEEK = 7.0  # a habitual rescheduler moves about this many sessions a week, whatever their load
NORMAL_RATE = 0.05  # everyone else; with ~5% habitual tutors the platform lands near 8%


def _slug(name: str) -> str:
    # email local parts are plain ASCII here: "Núñez" -> "nunez", "O'Connor" -> "oconnor"
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(ch for ch in ascii_name.lower() if ch.isalnum() or ch == "-")


_SLUGS = {name: _slug(name) for name in (*ADULT_FIRST, *STUDENT_FIRST, *LAST)}


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a non-leap year
        return day.replace(year=day.year - years, day=28)


def _pick(rng: random.Random, items, cum: list[int]):
    return items[bisect_left(cum, rng.random() * cum[-1] + 1e-12)] if len(items) > 1 else items[0]


def _chunks(conn: Connection, table: Table, rows: list[dict]) -> None:
    for start in range(0, len(rows), CHUNK):
        conn.execute(insert(table), rows[start:start + CHUNK])


def _require_empty(conn: Connection) -> None:
    for table in (Manager.__table__, Tutor.__table__, Student.__table__, TutoringSession.__table__,
                  Feedback.__table__, RescheduleEvent.__table__):
        if conn.execute(select(table.c.id).limit(1)).first() is not None:
            raise RuntimeError(f"generate_platform needs an empty database; {table.name} already has rows")


def _reset_sequences(conn: Connection) -> None:
    # explicit ids leave the SERIAL sequences at 1; later autoincrement inserts would collide
    for table in ("managers", "tutors", "students", "tutoring_sessions", "feedback", "reschedule_events"):
        conn.execute(text(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
        ))


def generate_platform(url: str, *, size: PlatformSize = PlatformSize(), seed: int = 42,
                      now: datetime) -> dict[str, int]:
    """Fill the empty migrated database at url with a deterministic demo platform; return rows per table."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(timezone.utc)
    rng = random.Random(seed)
    engine = get_engine(url)
    with engine.begin() as conn:
        _require_empty(conn)
        counts = _Generator(conn, rng, size, now).run()
        if conn.dialect.name == "postgresql":
            _reset_sequences(conn)
            # fresh statistics so the first flow run after a bulk load gets sane plans
            conn.execute(text("ANALYZE managers, tutors, students, tutoring_sessions, feedback, reschedule_events"))
    return counts


@dataclass(slots=True)
class _Pair:
    """A tutor-student pairing: when they work together and their usual slot."""

    tutor_id: int
    student_id: int
    subject: str
    start: int  # seconds after base: first possible session (the pinned session's exact start)
    end: int
    phase: float  # 0..1 for pairs already running when the window opens, -1 for new ones
    minutes: int
    weekday_slot: int  # seconds after local midnight
    weekend_slot: int
    cadence: float  # relative sessions per week
    pinned: bool = False
    sessions: int = 0


class _Generator:
    """One generation run; times are integer seconds after `base` (a UTC midnight before the window)."""

    def __init__(self, conn: Connection, rng: random.Random, size: PlatformSize, now: datetime) -> None:
        self.conn, self.rng, self.size = conn, rng, size
        self.now = now
        window_start = now - timedelta(days=size.days)
        # ~5% of sessions lie in the future (5/95 of the past window), but only the next few days
        horizon = now + timedelta(days=min(size.days * 5 / 95, 7))
        self.base_day = (window_start - timedelta(days=2)).date()
        self.base = datetime.combine(self.base_day, time(), tzinfo=timezone.utc)
        self.t0 = int((window_start - self.base).total_seconds())
        self.now_s = (now - self.base).total_seconds()  # float: now may carry microseconds
        self.horizon = int((horizon - self.base).total_seconds())
        self.n_days = self.horizon // DAY + 3
        self.weekend = [(self.base_day + timedelta(days=d)).weekday() >= 5 for d in range(self.n_days)]
        # noon UTC offset per zone and local date: sessions are daytime, DST flips at 2 a.m.
        self.offsets = [
            [int(ZoneInfo(zone).utcoffset(datetime.combine(self.base_day + timedelta(days=d), time(12)))
                 .total_seconds()) for d in range(self.n_days)]
            for zone, _ in ZONES
        ]
        self.zone_cum = list(accumulate(weight for _, weight in ZONES))
        self.counts = {"managers": 0, "tutors": 0, "students": 0, "tutoring_sessions": 0,
                       "feedback": 0, "reschedule_events": 0}

    def dt(self, seconds: float) -> datetime:
        return self.base + timedelta(seconds=seconds)

    def run(self) -> dict[str, int]:
        self.managers()
        self.tutors()
        self.students()
        self.pairs()
        self.sessions()
        return self.counts

    # --- people ------------------------------------------------------------------

    def managers(self) -> None:
        rng, rows = self.rng, []
        for mid in range(1, self.size.managers + 1):
            first, last = rng.choice(ADULT_FIRST), rng.choice(LAST)
            # the "m" keeps manager addresses apart from tutors' first.last.<id>@example.com
            rows.append({"id": mid, "name": f"{first} {last}",
                         "email": f"{_SLUGS[first]}.{_SLUGS[last]}.m{mid}@example.com"})
        _chunks(self.conn, Manager.__table__, rows)
        self.counts["managers"] = len(rows)

    def tutors(self) -> None:
        rng, size = self.rng, self.size
        # shuffled round robin: every manager owns floor or ceil of tutors/managers
        owners = [i % max(size.managers, 1) + 1 for i in range(size.tutors)]
        rng.shuffle(owners)
        self.active_from = [0] * (size.tutors + 1)
        self.tutor_subjects: list[tuple[str, ...]] = [()] * (size.tutors + 1)
        popularity = [0.0] * (size.tutors + 1)
        recent_limit = self.now_s - 10 * DAY
        rows = []
        for tid in range(1, size.tutors + 1):
            first, last = rng.choice(ADULT_FIRST), rng.choice(LAST)
            if rng.random() < 0.05 and recent_limit > self.t0:
                # a new hire inside the window: onboarding flows need somebody to welcome
                created = rng.uniform(self.t0, recent_limit)
                self.active_from[tid] = int(created + rng.uniform(1, 4) * DAY)
                popularity[tid] = rng.uniform(0.3, 0.8)
            else:
                created = self.t0 - rng.uniform(14, 900) * DAY
                self.active_from[tid] = self.t0
                popularity[tid] = rng.lognormvariate(0, 0.35)
            pool = ELEMENTARY_SUBJECTS if rng.random() < 0.2 else UPPER_SUBJECTS
            self.tutor_subjects[tid] = tuple(rng.sample(pool, rng.choice((1, 2, 2, 3))))
            rows.append({"id": tid, "name": f"{first} {last}",
                         "email": f"{_SLUGS[first]}.{_SLUGS[last]}.{tid}@example.com",
                         "manager_id": owners[tid - 1], "created_at": self.dt(int(created))})
            if len(rows) >= CHUNK:
                _chunks(self.conn, Tutor.__table__, rows)
                rows = []
        _chunks(self.conn, Tutor.__table__, rows)
        self.counts["tutors"] = size.tutors
        self.popularity_cum = list(accumulate(popularity[1:]))
        habitual = round(size.tutors * 0.05) or (1 if size.tutors >= 10 else 0)
        self.habitual = set(rng.sample(range(1, size.tutors + 1), habitual))

    def students(self) -> None:
        rng, size = self.rng, self.size
        today = self.now.date()
        n = size.students
        self.young = bytearray(n + 1)  # under 13 at now
        self.zone = bytearray(n + 1)
        self.feedback_propensity = [0.0] * (n + 1)
        rows = []
        for sid in range(1, n + 1):
            first, last = rng.choice(STUDENT_FIRST), rng.choice(LAST)
            u = rng.random()
            if u < 0.10:
                age = _pick(rng, YOUNG_AGES, YOUNG_AGE_CUM)
            elif u < 0.75:
                age = rng.randint(13, 17)
            elif u < 0.90:
                age = rng.randint(18, 19)
            else:
                age = rng.randint(20, 45)
            latest = _years_before(today, age)
            earliest = _years_before(today, age + 1) + timedelta(days=1)
            birth = earliest + timedelta(days=rng.randint(0, (latest - earliest).days))
            email: str | None = f"{_SLUGS[first]}.{_SLUGS[last]}.{sid}@example.org"
            parent_name = parent_email = None
            consent = False
            parent_last = last if rng.random() < 0.85 else rng.choice(LAST)
            parent_first = rng.choice(ADULT_FIRST)
            if age < 13:
                self.young[sid] = 1
                if rng.random() < 0.2:
                    email = None  # young children often have no address of their own
                v = rng.random()
                if v < 0.05:
                    # sign-up never collected a parent address: COPPA flows must skip, not guess
                    parent_name = f"{parent_first} {parent_last}" if rng.random() < 0.5 else None
                else:
                    parent_name = f"{parent_first} {parent_last}"
                    parent_email = f"{_SLUGS[parent_first]}.{_SLUGS[parent_last]}.{sid}@example.net"
                    consent = v >= 0.15  # ~10% of the under-13s still await consent
            elif age < 18:
                if rng.random() < 0.55:
                    parent_name = f"{parent_first} {parent_last}"
                    parent_email = f"{_SLUGS[parent_first]}.{_SLUGS[parent_last]}.{sid}@example.net"
                    consent = rng.random() < 0.8
            elif age < 20 and rng.random() < 0.1:
                parent_name = f"{parent_first} {parent_last}"
                parent_email = f"{_SLUGS[parent_first]}.{_SLUGS[parent_last]}.{sid}@example.net"
            self.zone[sid] = bisect_left(self.zone_cum, rng.random() * self.zone_cum[-1] + 1e-12)
            # some students always rate their sessions, some never do: reminders target the latter
            self.feedback_propensity[sid] = rng.betavariate(3, 2)
            rows.append({"id": sid, "name": f"{first} {last}", "email": email, "birth_date": birth,
                         "parent_name": parent_name, "parent_email": parent_email, "parent_consent": consent})
            if len(rows) >= CHUNK:
                _chunks(self.conn, Student.__table__, rows)
                rows = []
        _chunks(self.conn, Student.__table__, rows)
        self.counts["students"] = n

    # --- who teaches whom, and how often -----------------------------------------------

    def _subject(self, tid: int, sid: int) -> str:
        rng = self.rng
        wanted = ELEMENTARY_SUBJECTS if self.young[sid] else UPPER_SUBJECTS
        fitting = [s for s in self.tutor_subjects[tid] if s in wanted]
        return rng.choice(fitting) if fitting else rng.choice(wanted)

    def _new_pair(self, tid: int, sid: int, start: int, end: int, phase: float, pinned: bool = False) -> _Pair:
        rng = self.rng
        cum = YOUNG_DURATION_CUM if self.young[sid] else DURATION_CUM
        return _Pair(
            tutor_id=tid, student_id=sid, subject=self._subject(tid, sid), start=start, end=end, phase=phase,
            minutes=_pick(rng, DURATIONS, cum),
            weekday_slot=_pick(rng, WEEKDAY_HOURS, WEEKDAY_HOUR_CUM) * HOUR + rng.choice(START_MINUTES) * MINUTE,
            weekend_slot=rng.choice(WEEKEND_HOURS) * HOUR + rng.choice(START_MINUTES) * MINUTE,
            cadence=_pick(rng, (1.0, 1.5, 2.0, 3.0), [45, 65, 90, 100]), pinned=pinned,
        )

    def pairs(self) -> None:
        rng, size = self.rng, self.size
        self.pair_list: list[_Pair] = []
        if not size.sessions:
            return
        t0, horizon, seen = self.t0, self.horizon, set()
        for sid in range(1, size.students + 1):
            n_tutors = min(_pick(rng, (1, 2, 3), [70, 95, 100]), size.tutors)
            chosen: list[int] = []
            while len(chosen) < n_tutors:
                tid = bisect_left(self.popularity_cum, rng.random() * self.popularity_cum[-1] + 1e-12) + 1
                if tid not in chosen:
                    chosen.append(tid)
            for tid in chosen:
                # How long the two work together: exam cram, a semester, or years.
                u = rng.random()
                length = rng.uniform(14, 45) if u < 0.3 else rng.uniform(45, 150) if u < 0.7 else rng.uniform(150, 400)
                length = int(length * DAY)
                lo = self.active_from[tid]
                # A start uniform over [lo - length, horizon) keeps the number of active pairs
                # (so sessions per day) flat across the window: as many pairings end as begin.
                earliest = lo - length if lo == t0 else lo
                start = int(rng.uniform(earliest, horizon - DAY / 2))
                end = min(start + length, horizon)
                if start < lo:
                    # already working together when the window opens: a random phase stops
                    # every such pair from meeting on day one
                    pair = self._new_pair(tid, sid, lo, end, rng.random())
                else:
                    pair = self._new_pair(tid, sid, start, end, -1.0)
                self.pair_list.append(pair)
                seen.add((tid, sid))
        # A few brand-new pairings whose first session ended 2-4 hours before now, whatever hour
        # now is: the first-session check-in flow has work even when now is a US morning.
        # (never more than a small share of all sessions, so tiny platforms stay satisfiable)
        for _ in range(min(max(1, round(size.tutors * 0.02)), size.sessions // 50)):
            for _attempt in range(20):
                tid, sid = rng.randint(1, size.tutors), rng.randint(1, size.students)
                if (tid, sid) not in seen and self.active_from[tid] < self.now_s - DAY:
                    break
            else:
                continue
            seen.add((tid, sid))
            pair = self._new_pair(tid, sid, 0, horizon, -1.0, pinned=True)
            ended = self.now_s - rng.uniform(2.25, 3.75) * HOUR
            pair.start = int((ended - pair.minutes * MINUTE) // 300 * 300)
            self.pair_list.append(pair)
        self._allot()

    def _allot(self) -> None:
        # Split exactly size.sessions over pairs in proportion to cadence x time together.
        # Rounding is random, not largest-remainder: that would hand the leftover sessions to
        # short pairings regardless of length and crowd the days just before the horizon.
        rng, pairs, wanted = self.rng, self.pair_list, self.size.sessions
        weights = [p.cadence * max(p.end - p.start, DAY / 4) for p in pairs]
        total = sum(weights)
        given = 0
        for p, w in zip(pairs, weights):
            quota = wanted * w / total
            p.sessions = int(quota) + (rng.random() < quota - int(quota))
            if p.pinned and not p.sessions:
                p.sessions = 1
            given += p.sessions
        cum = list(accumulate(weights))
        while given != wanted:
            p = pairs[bisect_left(cum, rng.random() * cum[-1] + 1e-12)]
            if given < wanted:
                p.sessions += 1
                given += 1
            elif p.sessions > (1 if p.pinned else 0):
                p.sessions -= 1
                given -= 1

    # --- sessions, feedback, reschedules --------------------------------------------

    def sessions(self) -> None:
        by_tutor: list[list[_Pair]] = [[] for _ in range(self.size.tutors + 1)]
        for p in self.pair_list:
            if p.sessions:
                by_tutor[p.tutor_id].append(p)
        self.pair_list = []
        self.next_session = self.next_feedback = self.next_reschedule = 1
        self.buf_sessions: list[dict] = []
        self.buf_feedback: list[dict] = []
        self.buf_reschedules: list[dict] = []
        for tid in range(1, self.size.tutors + 1):
            if by_tutor[tid]:
                self._tutor(tid, by_tutor[tid])
                by_tutor[tid] = []
                if len(self.buf_sessions) >= CHUNK:
                    self._flush()
        self._flush()

    def _flush(self) -> None:
        # sessions first: feedback and reschedule rows reference them
        for table, buf in ((TutoringSession.__table__, self.buf_sessions), (Feedback.__table__, self.buf_feedback),
                           (RescheduleEvent.__table__, self.buf_reschedules)):
            if buf:
                _chunks(self.conn, table, buf)
                self.counts[table.name] += len(buf)
                buf.clear()

    def _local_start(self, zone: int, local_day: int, pair: _Pair) -> int:
        rng = self.rng
        local_day = min(max(local_day, 0), self.n_days - 1)
        if rng.random() < 0.15:  # now and then a session off the usual slot
            hours = WEEKEND_HOURS if self.weekend[local_day] else WEEKDAY_HOURS
            second = rng.choice(hours) * HOUR + rng.choice(START_MINUTES) * MINUTE
        else:
            second = pair.weekend_slot if self.weekend[local_day] else pair.weekday_slot
        return local_day * DAY + second - self.offsets[zone][local_day]

    def _tutor(self, tid: int, pairs: list[_Pair]) -> None:
        rng, horizon = self.rng, self.horizon
        busy: set[int] = set()  # 15-minute slots the tutor already teaches in

        def free(start: int, minutes: int) -> bool:
            return all(s not in busy for s in range(start // 900, (start + minutes * MINUTE - 1) // 900 + 1))

        def take(start: int, minutes: int) -> None:
            busy.update(range(start // 900, (start + minutes * MINUTE - 1) // 900 + 1))

        planned: list[tuple[int, int, int, int]] = []  # (start, pair index, minutes, pinned)
        for index, pair in enumerate(pairs):
            if pair.pinned:
                take(pair.start, pair.minutes)
                planned.append((pair.start, index, pair.minutes, 1))
        for index, pair in enumerate(pairs):
            zone, lo, k, phase = self.zone[pair.student_id], pair.start, pair.sessions, pair.phase
            if phase >= 0:
                # the window opens mid-day: spreading from that local midnight instead keeps the
                # first evening as busy as the others (a few slots land hours before the window)
                offset = self.offsets[zone][lo // DAY]
                lo = (lo + offset) // DAY * DAY - offset
                gap = (pair.end - lo) / k
                earliest = lo
            else:
                earliest = lo
                # a new pairing meets first at its start; the shorter gap leaves the usual
                # half gap before its end, so recent days are not thinner than older ones
                gap, phase = (pair.end - lo) / (k - 0.5), 0.0
            previous = -1
            for i in range(1 if pair.pinned else 0, k):
                target = lo + (i + phase + (rng.uniform(-0.3, 0.3) if i else 0.0)) * gap
                utc_day = min(max(int(target // DAY), 0), self.n_days - 1)
                local_day = int((target + self.offsets[zone][utc_day]) // DAY)
                local_day = max(local_day, previous + 1)  # at most one session a day per pair
                when = self._local_start(zone, local_day, pair)
                if when < earliest:
                    local_day += 1
                    when = self._local_start(zone, local_day, pair)
                if when >= horizon:  # squeezed against the horizon: keep the raw spot instead
                    when = int(min(target, horizon - HOUR)) // 1800 * 1800
                previous = local_day
                length = pair.minutes if rng.random() >= 0.1 else rng.choice(DURATIONS)
                if not free(when, length):
                    for shift in SHIFTS:
                        # never before the pairing (or the tutor) started, never past the horizon
                        if earliest <= when + shift < horizon and free(when + shift, length):
                            when += shift
                            break
                take(when, length)
                planned.append((when, index, length, 0))
        planned.sort()
        numbers = [0] * len(pairs)
        rate = NORMAL_RATE
        if tid in self.habitual:
            per_week = len(planned) * 7 * DAY / (horizon - self.t0)
            rate = min(0.9, max(0.35, HABITUAL_PER_WEEK / per_week))
        for when, index, length, pinned in planned:
            numbers[index] += 1
            self._session(tid, pairs[index], numbers[index], when, length, pinned, rate)

    def _session(self, tid: int, pair: _Pair, number: int, when: int, length: int, pinned: int,
                 reschedule_rate: float) -> None:
        rng, now_s, dt = self.rng, self.now_s, self.dt
        session_id = self.next_session
        self.next_session += 1
        sid = pair.student_id
        started = ended = None
        if when + length * MINUTE > now_s:
            # still to come or under way: a session in progress has started_at and no end yet
            status = SessionStatus.SCHEDULED
            if when <= now_s:
                begin = when + rng.randint(-60, 180)
                started = dt(begin) if begin <= now_s else None
        else:
            u = 0.0 if pinned else rng.random()
            if u < 0.89:
                # tutors log in a little early or late and overrun a little; the planted sessions
                # stay tight so they end inside the 2-4 hour check-in window
                late = rng.randint(0, 180) if pinned else int(rng.triangular(-120, 480, 30))
                overrun = rng.randint(-120, 300) if pinned else int(rng.triangular(-180, 420, 0))
                begin = when + late
                end = begin + length * MINUTE + overrun
                if end > now_s:
                    status = SessionStatus.SCHEDULED
                    started = dt(begin)
                else:
                    status = SessionStatus.COMPLETED
                    started, ended = dt(begin), dt(end)
                    self._feedback(session_id, sid, end)
            elif u < 0.95:
                status = SessionStatus.NO_SHOW
            else:
                status = SessionStatus.CANCELLED
        self.buf_sessions.append({
            "id": session_id, "tutor_id": tid, "student_id": sid, "session_number": number,
            "subject": pair.subject, "scheduled_start": dt(when), "started_at": started, "ended_at": ended,
            "status": status.value,
        })
        if rng.random() < reschedule_rate:
            self._reschedules(session_id, tid, when, reschedule_rate > NORMAL_RATE)

    def _feedback(self, session_id: int, sid: int, end: int) -> None:
        rng = self.rng
        # per-student propensity averages 0.6, so ~60% of completed sessions get rated
        if rng.random() >= self.feedback_propensity[sid]:
            return
        u = rng.random()
        if u < 0.5:
            delay = rng.uniform(60, HOUR)
        elif u < 0.8:
            delay = rng.uniform(HOUR, DAY)
        else:
            delay = rng.uniform(DAY, 3 * DAY)
        submitted = end + int(delay)
        if submitted > self.now_s:
            return  # not written yet: the reminder flow should still find this session
        rating = bisect_left(RATING_CUM, rng.random() * RATING_CUM[-1] + 1e-12) + 1
        comment = rng.choice(COMMENTS[rating]) if rng.random() < 0.45 else None
        self.buf_feedback.append({
            "id": self.next_feedback, "session_id": session_id, "student_id": sid, "rating": rating,
            "comment": comment, "submitted_at": self.dt(submitted), "message_id": None,
        })
        self.next_feedback += 1

    def _reschedules(self, session_id: int, tid: int, final_start: int, habitual: bool) -> None:
        rng = self.rng
        moves = _pick(rng, (1, 2, 3), [82, 97, 100])
        # walk back from the start the session ended up with: each move's original_start is
        # the previous move's new_start, and each move happened before both starts and before now
        new_start, latest = final_start, self.now_s
        events = []
        for _ in range(moves):
            shift = rng.choice((-2 * DAY, -DAY, DAY, 2 * DAY, -2 * HOUR, -HOUR, HOUR, 2 * HOUR, DAY + HOUR, 7 * DAY))
            original = new_start - shift
            u = rng.random()
            if u < 0.3:
                lead = rng.uniform(0.5, 6) * HOUR
            elif u < 0.8:
                lead = rng.uniform(6, 48) * HOUR
            else:
                lead = rng.uniform(2, 6) * DAY
            at = min(original, new_start) - lead
            if at > latest:
                # a move of a session days ahead happened at some point before now, not all
                # of them in the last hour
                at = latest - rng.uniform(0.25 * HOUR, 4 * DAY)
            at = int(at)
            who = "tutor" if rng.random() < (0.85 if habitual else 0.45) else "student"
            events.append((original, new_start, at, who))
            new_start, latest = original, at
        for original, new, at, who in reversed(events):
            self.buf_reschedules.append({
                "id": self.next_reschedule, "session_id": session_id, "tutor_id": tid, "initiated_by": who,
                "original_start": self.dt(original), "new_start": self.dt(new), "rescheduled_at": self.dt(at),
            })
            self.next_reschedule += 1


def latest_unrated_session_end(session: Session, before: datetime) -> datetime | None:
    """When the latest completed session that nobody rated ended, before a moment (the demo's invitation window)."""
    unrated = ~select(Feedback.id).where(Feedback.session_id == TutoringSession.id).exists()
    return session.scalar(select(func.max(TutoringSession.ended_at)).where(
        TutoringSession.ended_at <= before, TutoringSession.status == SessionStatus.COMPLETED, unrated))


def tracker_tally(session: Session) -> dict[str, Any]:
    """What the tracker recorded, as the demo prints it: events by kind and verdict, devices, feedback, opt-outs."""
    e = EmailTrackingEvent
    return {
        "events": session.execute(select(e.event_type, e.is_machine, e.machine_reason, func.count())
                                  .where(e.event_type.in_([EventType.OPENED, EventType.CLICKED, EventType.UNSUBSCRIBED]))
                                  .group_by(e.event_type, e.is_machine, e.machine_reason)
                                  .order_by(e.event_type, e.is_machine, e.machine_reason)).all(),
        "devices": session.execute(select(e.device, func.count())
                                   .where(e.event_type == EventType.OPENED, e.is_machine.is_(False))
                                   .group_by(e.device).order_by(func.count().desc())).all(),
        "feedback": session.scalar(select(func.count()).select_from(Feedback).where(Feedback.message_id.is_not(None))),
        "opted_out": session.scalar(select(func.count()).select_from(EmailPreference)
                                    .where(EmailPreference.feedback_reminders.is_(False))),
    }


def move_students_to(session: Session, domain: str, count: int) -> list[str]:
    """Give the first `count` students with an address of their own one at `domain` (the demo's bouncing domain)."""
    rows = session.execute(select(Student.id, Student.email).where(Student.email.is_not(None))
                           .order_by(Student.id).limit(count)).all()
    moved = []
    for student_id, address in rows:
        new = f"{address.split('@')[0]}@{domain}"
        session.execute(Student.__table__.update().where(Student.id == student_id).values(email=new))
        moved.append(new)
    return moved
