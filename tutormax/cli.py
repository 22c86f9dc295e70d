"""The `tutormax` command: migrate, generate demo data, run the sink, run or serve flows, the demo."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from tutormax.settings import PROJECT_ROOT, ConfigError, var_dir

FLOW_NAMES = ("feedback-invitations", "feedback-reminders", "first-session-checkins", "checkin-escalations",
              "rescheduling-alerts", "weekly-digests", "manager-digests", "monthly-summaries", "performance-reports",
              "cleanup-old-tracking-events", "email-analytics")


def _prefect_home() -> Path:
    # keep Prefect's local state (its server's database, logs) inside the project
    home = Path(os.environ.setdefault("PREFECT_HOME", str(var_dir() / "prefect")))
    # Prefect won't create a missing parent folder, and `make` points PREFECT_HOME under var/ before it exists
    home.mkdir(parents=True, exist_ok=True)
    return home


def _now(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def cmd_migrate(args: argparse.Namespace) -> None:
    from db.migrate import downgrade, upgrade
    from tutormax.settings import get_settings

    settings = get_settings()
    (downgrade if args.down else upgrade)(settings.database_url, args.revision or ("base" if args.down else "head"))
    print(f"migrated {settings.safe_database_url()} {'down' if args.down else 'up'} to {args.revision or ('base' if args.down else 'head')}")


def cmd_generate(args: argparse.Namespace) -> None:
    from db.demo_data import PlatformSize, generate_platform
    from tutormax.settings import get_settings

    size = PlatformSize.for_sessions(args.sessions) if args.sessions else PlatformSize()
    counts = generate_platform(get_settings().database_url, size=size, seed=args.seed,
                               now=_now(args.now) or datetime.now(timezone.utc))
    print(counts)


def cmd_sink(args: argparse.Namespace) -> None:
    import time

    from tutormax.sink import start_sink

    controller = start_sink(Path(args.maildir), args.host, args.port)
    print(f"SMTP sink on {args.host}:{args.port}, storing messages in {args.maildir} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        controller.stop()


def cmd_run(args: argparse.Namespace) -> None:
    _prefect_home()
    import inspect

    from flows.registry import FLOWS

    flow = FLOWS[args.flow]
    kwargs = {"now": _now(args.now)}
    if args.dry_run:
        if "dry_run" not in inspect.signature(flow.fn).parameters:
            sys.exit(f"{args.flow} has no dry run: it sends nothing")
        kwargs["dry_run"] = True
    print(flow(**kwargs))


def cmd_serve(args: argparse.Namespace) -> None:
    _prefect_home()
    from flows.registry import serve_all

    serve_all(PROJECT_ROOT / "prefect.yaml")


def cmd_tracker(args: argparse.Namespace) -> None:
    # exec: gunicorn becomes this process, so signals and exit codes are its own
    conf = PROJECT_ROOT / "tracking_app" / "gunicorn.conf.py"
    command = [sys.executable, "-m", "gunicorn", "-c", str(conf), "tracking_app.wsgi:app"]
    if args.bind:
        command += ["--bind", args.bind]
    if args.workers:
        command += ["--workers", str(args.workers)]
    os.chdir(PROJECT_ROOT)
    os.execv(sys.executable, command)


def cmd_ingest_journal(args: argparse.Namespace) -> None:
    from tracking_app.journal import Journal

    print(Journal(var_dir() / "journal").ingest())


def cmd_preview(args: argparse.Namespace) -> None:
    from tasks.render import Renderer, message_context, template_name, track
    from tasks.samples import NOW, SAMPLES
    from tutormax.links import Links
    from tutormax.settings import get_settings

    settings = get_settings()
    renderer, links = Renderer(settings.timezone), Links(settings)
    out = var_dir() / "previews"
    out.mkdir(parents=True, exist_ok=True)
    wanted = [(t, n) for t, n in renderer.available()
              if (args.type in (None, t)) and (args.name is None or n == template_name(args.name, args.variant))]
    if not wanted:
        sys.exit(f"no template matches {args.type} {args.name or ''}")
    for template_type, name in wanted:
        recipient, metadata = SAMPLES[template_type]
        context = message_context(template_type=template_type, message_id=1, recipient_name=recipient,
                                  metadata=metadata, settings=settings, links=links, now=NOW)
        rendered = renderer.render(template_type, name, context)
        rendered = track(rendered, links, 1, {context["unsubscribe_url"], context["preferences_url"]})
        (out / f"{template_type}_{name}.html").write_text(rendered.html)
        (out / f"{template_type}_{name}.txt").write_text(f"Subject: {rendered.subject}\n\n{rendered.text}")
        print(f"{template_type}/{name}: {rendered.subject!r} -> {out / (template_type + '_' + name)}.html/.txt")


def cmd_demo(args: argparse.Namespace) -> None:
    home = _prefect_home()
    from tutormax.demo import run_demo

    run_demo(sessions=args.sessions, prefect_home=home)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tutormax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="apply (or with --down, revert) database migrations")
    p.add_argument("--down", action="store_true")
    p.add_argument("--revision")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("generate", help="fill an empty database with a demo tutoring platform")
    p.add_argument("--sessions", type=int, default=0, help="platform size in sessions (default 20,000)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--now", help="ISO time the platform is generated around (default: now)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("sink", help="run a local SMTP sink that stores messages in a Maildir")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8025)
    p.add_argument("--maildir", default=str(var_dir() / "maildir"))
    p.set_defaults(func=cmd_sink)

    p = sub.add_parser("run", help="run one flow once, now")
    p.add_argument("flow", choices=sorted(FLOW_NAMES))
    p.add_argument("--now", help="ISO time to run as (backfill); default: the wall clock")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("serve", help="serve every deployment in prefect.yaml on its schedule")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("tracker", help="serve the tracker under gunicorn (production)")
    p.add_argument("--bind", help="host:port (default TRACKER_BIND or 127.0.0.1:8000)")
    p.add_argument("--workers", type=int)
    p.set_defaults(func=cmd_tracker)

    p = sub.add_parser("ingest-journal", help="move events the tracker journaled during a database outage into the database")
    p.set_defaults(func=cmd_ingest_journal)

    p = sub.add_parser("preview", help="render templates with sample data to var/previews/")
    p.add_argument("type", nargs="?", help="template type (default: all)")
    p.add_argument("--version", dest="name", help="e.g. v1 (default: every version)")
    p.add_argument("--variant", help="A/B variant, e.g. b")
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("demo", help="the whole pipeline on embedded defaults, start to finish")
    p.add_argument("--sessions", type=int, default=20000)
    p.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
