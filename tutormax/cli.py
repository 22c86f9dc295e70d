"""The `tutormax` command: migrate, generate demo data, run the sink, run or serve flows, the demo."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from tutormax.settings import PROJECT_ROOT, ConfigError, var_dir

NOW_HELP = "as of this ISO time (backfill); without a zone it is read in TIMEZONE, as the flows read theirs"


def _prefect_home() -> Path:
    # keep Prefect's local state (its server's database, logs) inside the project
    home = Path(os.environ.setdefault("PREFECT_HOME", str(var_dir() / "prefect")))
    # Prefect won't create a missing parent folder, and `make` points PREFECT_HOME under var/ before it exists
    home.mkdir(parents=True, exist_ok=True)
    return home


def _now(value: str | None) -> datetime | None:
    """--now as an aware instant: a naive time is local to TIMEZONE, as a flow's `now` parameter is."""
    if not value:
        return None
    from tutormax.clock import resolve_now

    try:
        return resolve_now(datetime.fromisoformat(value))
    except ValueError:
        sys.exit(f"--now {value!r} is not an ISO time (e.g. 2026-11-30T09:00 or 2026-11-30T14:00+00:00)")


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

    from flows.registry import load_all_flows

    flow = load_all_flows()[args.flow]
    if "now" not in inspect.signature(flow.fn).parameters:
        sys.exit(f"{args.flow} is an operator's form, not a run on a clock: use `tutormax campaign ...`")
    kwargs = {"now": _now(args.now)}
    if args.dry_run:
        if "dry_run" not in inspect.signature(flow.fn).parameters:
            sys.exit(f"{args.flow} has no dry run: it sends nothing")
        kwargs["dry_run"] = True
    print(flow(**kwargs))


def cmd_serve(args: argparse.Namespace) -> None:
    _prefect_home()
    from flows.registry import serve_all

    serve_all()


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


def cmd_cluster(args: argparse.Namespace) -> None:
    from tutormax import cluster

    config = cluster.ClusterConfig.from_env(workers=getattr(args, "workers", None),
                                            port=getattr(args, "port", None),
                                            prefect_database=getattr(args, "prefect_database", None))
    if args.action == "up":
        try:
            cluster.up(config)
        except cluster.ClusterError as exc:
            sys.exit(f"cluster up failed: {exc}")
    elif args.action == "down":
        cluster.down(config)
    elif args.action == "automation":
        api_url = args.api_url or os.environ.get("PREFECT_API_URL") or config.api_url
        cluster.apply_crash_automation(config, api_url)
        print(f"{api_url}: automation {cluster.AUTOMATION_NAME!r} marks a flow run Crashed "
              f"{config.crash_after_seconds} s after its last heartbeat; workers must beat more often "
              f"(PREFECT_FLOWS_HEARTBEAT_FREQUENCY={config.heartbeat_seconds})")
    else:
        print("\n".join(cluster.status(config)))


def cmd_ingest_journal(args: argparse.Namespace) -> None:
    from tutormax.journal import Journal

    print(Journal(var_dir() / "journal").ingest())


def cmd_suppressions(args: argparse.Namespace) -> None:
    import getpass

    from db import suppressions
    from db.events import SuppressionReason, SuppressionSource
    from db.session import transaction
    from tasks.mime import InvalidRecipient, checked_address

    at = datetime.now(timezone.utc)
    if args.action == "list":
        with transaction() as session:
            rows = suppressions.in_force(session, at, args.reason, include_lifted=args.all)
        if not rows:
            print("no suppressions" + (f" with reason {args.reason}" if args.reason else ""))
        for row in rows:
            until = f" until {row.expires_at:%Y-%m-%d %H:%M} UTC" if row.expires_at else ""
            lifted = f"  LIFTED {row.lifted_at:%Y-%m-%d %H:%M} by {row.lifted_by}: {row.lifted_why}" if row.lifted_at else ""
            scope = ", marketing only" if row.scope == "marketing" else ""
            print(f"{row.email}  {row.reason} ({row.source}{scope}) since {row.created_at:%Y-%m-%d %H:%M} UTC"
                  f"{until}{lifted}")
            if row.detail:
                print(f"    {row.detail[:300]}")
            if row.report and args.reports:
                print("    report:\n" + "\n".join(f"      {line}" for line in row.report.splitlines()))
        return
    try:
        address = checked_address(args.address.strip())
    except InvalidRecipient as exc:
        sys.exit(f"{args.address!r}: {exc}")
    if not args.why.strip():
        sys.exit("--why needs a reason: it is kept with the change")
    by = args.by or getpass.getuser()
    with transaction() as session:
        if args.action == "add":
            suppressions.suppress(session, address, reason=SuppressionReason.OPERATOR,
                                  source=SuppressionSource.OPERATOR, detail=f"{by}: {args.why}", at=at)
            print(f"suppressed {address.lower()}")
            return
        lifted = suppressions.lift(session, address, why=args.why, by=by, at=at)
    if not lifted:
        sys.exit(f"{address.lower()} is not suppressed")
    print(f"lifted {lifted} suppression(s) of {address.lower()}; it gets mail again")


def cmd_queue(args: argparse.Namespace) -> None:
    from datetime import timedelta

    from db import queue
    from db.session import transaction
    from tasks.summary import queue_lines
    from tutormax.settings import get_settings

    settings = get_settings()
    wall = datetime.now(timezone.utc)
    with transaction() as session:
        state = queue.state(session, _now(args.now) or wall, wall, timedelta(seconds=settings.claim_lease_seconds))
    print("\n".join(queue_lines(state, settings.tz)))


def cmd_limits(args: argparse.Namespace) -> None:
    _prefect_home()
    from tasks import send_rate
    from tutormax.settings import get_settings

    print(send_rate.apply(get_settings().smtp_rate_limit))


def cmd_dkim_record(args: argparse.Namespace) -> None:
    from tasks.dkim import load_key, public_record
    from tutormax.settings import get_settings

    settings = get_settings()
    pem = settings.dkim_private_key.get_secret_value()
    if not pem:
        sys.exit("DKIM is not configured: set DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY")
    print(f'{settings.dkim_selector}._domainkey.{settings.dkim_domain}. IN TXT "{public_record(load_key(pem.encode()))}"')


def cmd_bounce(args: argparse.Namespace) -> None:
    import json

    from tasks.bounce_parse import parse
    from tutormax.settings import get_settings
    from tutormax.verp import verp_for

    settings = get_settings()
    verp = verp_for(settings.bounce_address, settings.secret_bytes())
    unreadable = 0
    for name in args.files:
        try:
            raw = Path(name).read_bytes()
        except OSError as exc:
            unreadable += 1
            print(json.dumps({"file": name, "error": exc.strerror or type(exc).__name__}), flush=True)
            continue
        report = parse(raw, verp, settings.from_domain)
        print(json.dumps({
            "file": name,
            "kind": report.kind,
            "recipients": [recipient.address for recipient in report.recipients],
            "status": report.recipients[0].status if report.recipients else None,
            "message_id": report.message_id,
            "detector": report.detector,
        }), flush=True)
    if unreadable:
        sys.exit(f"{unreadable} of {len(args.files)} file(s) could not be read")


def cmd_preview(args: argparse.Namespace) -> None:
    from tasks.email_types import SAMPLE_NOW, all_types
    from tasks.render import Renderer, message_context, template_name, track
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
        recipient, metadata = all_types()[template_type].sample
        context = message_context(template_type=template_type, message_id=1, recipient_name=recipient,
                                  metadata=metadata, settings=settings, links=links, now=SAMPLE_NOW)
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
    from db.events import SuppressionReason
    from flows.registry import deployment_specs
    from tutormax.campaign_cli import add_parser as add_campaign_parser

    parser = argparse.ArgumentParser(prog="tutormax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="apply (or with --down, revert) database migrations")
    p.add_argument("--down", action="store_true")
    p.add_argument("--revision")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("generate", help="fill an empty database with a demo tutoring platform")
    p.add_argument("--sessions", type=int, default=0, help="platform size in sessions (default 20,000)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--now", help="the time the platform is generated around (default: now); " + NOW_HELP)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("sink", help="run a local SMTP sink that stores messages in a Maildir")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8025)
    p.add_argument("--maildir", default=str(var_dir() / "maildir"))
    p.set_defaults(func=cmd_sink)

    p = sub.add_parser("run", help="run one deployment's flow once, now (every deployment in prefect.yaml)")
    p.add_argument("flow", choices=sorted(spec["name"] for spec in deployment_specs()))
    p.add_argument("--now", help="run " + NOW_HELP + "; default: the wall clock")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("serve", help="serve every deployment in prefect.yaml on its schedule")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("tracker", help="serve the tracker under gunicorn (production)")
    p.add_argument("--bind", help="host:port (default TRACKER_BIND or 127.0.0.1:8000)")
    p.add_argument("--workers", type=int)
    p.set_defaults(func=cmd_tracker)

    p = sub.add_parser("cluster", help="a Prefect server on PostgreSQL, the work pool, its workers and the tracker "
                                       "on this machine (logs and pids in var/cluster/)")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("up", help="start it all: the server on a PostgreSQL database of its own, the work pool, "
                                      "every deployment, the crash automation, the workers, the tracker")
    q.add_argument("--workers", type=int, help="worker processes (default CLUSTER_WORKERS or 2)")
    q.add_argument("--port", type=int, help="the Prefect server's port (default CLUSTER_PREFECT_PORT or 4200)")
    q.add_argument("--prefect-database", help="the Prefect server's database (default CLUSTER_PREFECT_DATABASE "
                                              "or tutormax_prefect)")
    actions.add_parser("down", help="stop exactly what `up` started (and the flow runs its workers started)")
    actions.add_parser("status", help="what runs, whether the API and the tracker answer, workers online")
    q = actions.add_parser("automation", help="create (or replace) only the automation that marks runs Crashed when "
                                              "their heartbeats stop, on a production server")
    q.add_argument("--api-url", help="the Prefect API (default PREFECT_API_URL)")
    p.set_defaults(func=cmd_cluster)

    p = sub.add_parser("ingest-journal", help="move events the tracker journaled during a database outage into the database")
    p.set_defaults(func=cmd_ingest_journal)

    p = sub.add_parser("suppressions", help="see, add and lift suppressed addresses (they get no mail)")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("list", help="suppressions in force, newest first, with their reason and evidence")
    q.add_argument("--reason", choices=[r.value for r in SuppressionReason])
    q.add_argument("--all", action="store_true", help="lifted and expired ones too")
    q.add_argument("--reports", action="store_true", help="print each suppression's raw report")
    for action, text in (("remove", "lift an address's suppressions (recorded with who and why)"),
                         ("add", "suppress an address by hand")):
        q = actions.add_parser(action, help=text)
        q.add_argument("address")
        q.add_argument("--why", required=True, help="kept with the change")
        q.add_argument("--by", help="who (default: your user name)")
    p.set_defaults(func=cmd_suppressions)

    p = sub.add_parser("queue", help="the mail queue: what waits by priority, type and status, the oldest due, "
                                     "the next retry, claims that look stuck")
    p.add_argument("--now", help="judge what is due " + NOW_HELP)
    p.set_defaults(func=cmd_queue)

    p = sub.add_parser("limits", help="the send-rate limit on the Prefect server")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("apply", help="create or update it from SMTP_RATE_LIMIT (deactivate it when unset)")
    p.set_defaults(func=cmd_limits)

    p = sub.add_parser("dkim-record", help="the DNS TXT record that publishes the DKIM key (its public half)")
    p.set_defaults(func=cmd_dkim_record)

    p = sub.add_parser("bounce", help="bounce-mailbox reports (DSNs, other bounces, complaints, auto-replies)")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("parse", help="read report files (one email each): a JSON line per file, no database")
    q.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_bounce)

    add_campaign_parser(sub)

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
