"""`tutormax campaign ...`: create, list, show, preview, schedule, pause, resume and cancel campaigns."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PRIORITIES = ("critical", "high", "medium", "low")


def _instant(value: str | None, option: str) -> datetime | None:
    """An ISO time as an aware instant; a naive one is local to TIMEZONE."""
    if not value:
        return None
    from tutormax.clock import resolve_now

    try:
        return resolve_now(datetime.fromisoformat(value))
    except ValueError:
        sys.exit(f"{option} {value!r} is not an ISO time (e.g. 2026-12-07T09:00, read in TIMEZONE)")


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        sys.exit(f"cannot read the {what} {path!r}: {getattr(exc, 'strerror', None) or exc}")


def _form(args: argparse.Namespace):
    from pydantic import ValidationError

    from tasks.campaign_control import ABTest, CampaignForm, Content, weights_of

    segment, _, value = args.segment.partition(":")
    try:
        ab = None
        if args.ab_test_fraction is not None or args.ab_weights or args.body_file_b:
            if not (args.subject_b and args.body_file_b):
                sys.exit("an A/B test needs variant b's words: --subject-b and --body-file-b")
            weights = weights_of(args.ab_weights or "a=0.5,b=0.5")
            ab = ABTest(b=Content(subject=args.subject_b, preheader=args.preheader_b or "",
                                  body_markdown=_read(args.body_file_b, "body file")),
                        fraction=args.ab_test_fraction if args.ab_test_fraction is not None else 0.2,
                        weight_a=weights["a"], weight_b=weights["b"], winner_after=args.winner_after,
                        winner_metric=args.winner_metric, fallback=args.ab_fallback)
        return CampaignForm(
            name=args.name, segment=segment, segment_value=None if segment == "csv" else (value or None),
            members_csv=_read(value, "list") if segment == "csv" and value else None,
            content=Content(subject=args.subject, preheader=args.preheader or "",
                            body_markdown=_read(args.body_file, "body file")),
            category=args.category, priority=args.priority, at=_instant(args.at, "--at"), ab_test=ab)
    except ValidationError as exc:
        problems = "\n".join(f"  {'.'.join(map(str, e['loc'])) or 'campaign'}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors())
        sys.exit(f"the campaign is not valid:\n{problems}")
    except ValueError as exc:
        sys.exit(str(exc))


def _preview_lines(found: dict[str, Any]) -> list[str]:
    lines = [f"audience: {found['segment']}" + (f" {found['segment_value']}" if found["segment_value"] else "")
             + f": {found['found']:,} found, {found['recipients']:,} will receive it"]
    if found["same_address_twice"]:
        lines.append(f"  {found['same_address_twice']:,} share an address with another (one email each address)")
    for reason, count in found["excluded"].items():
        lines.append(f"  excluded, {reason}: {count:,}")
    for audience, count in found["unknown_ids"].items():
        lines.append(f"  {count:,} {audience} id(s) in the list match nobody")
    if set(found["portions"]) >= {"test"}:
        lines.append(f"  A/B test portion: {found['portions'].get('test', 0):,}; the rest, "
                     f"{found['portions'].get('rest', 0):,}, get the winner")
    return lines


def cmd_campaign(args: argparse.Namespace) -> None:
    from db import campaigns
    from db.segments import SegmentError
    from tasks import campaign_control

    now = datetime.now(timezone.utc)
    by = getattr(args, "by", None) or getpass.getuser()
    try:
        if args.action == "create":
            from tasks.plan_campaigns import preview

            campaign = campaign_control.create(_form(args), actor=by, now=now)
            print("\n".join(_preview_lines(preview(campaign.campaign_id, now))))
            when = f", to send at {campaign.scheduled_at:%Y-%m-%d %H:%M} UTC" if campaign.scheduled_at else \
                " (a draft: `tutormax campaign schedule ID` sends it)"
            print(f"created campaign {campaign.campaign_name!r}, {campaign.status}{when}")
            print(campaign.campaign_id)
        elif args.action == "list":
            _list()
        elif args.action == "show":
            show(args.campaign_id, args.json)
        elif args.action == "preview":
            from tasks.plan_campaigns import preview

            print("\n".join(_preview_lines(preview(args.campaign_id, now))))
        elif args.action == "schedule":
            from tasks.plan_campaigns import preview

            print("\n".join(_preview_lines(preview(args.campaign_id, now))))
            campaign = campaign_control.schedule(args.campaign_id, _instant(args.at, "--at"), actor=by, now=now)
            print(f"scheduled {args.campaign_id} for {campaign.scheduled_at:%Y-%m-%d %H:%M} UTC; the scheduled-campaigns "
                  "deployment plans it within 15 minutes of then")
        elif args.action == "pause":
            held = campaign_control.pause(args.campaign_id, actor=by, now=now, reason=args.why)
            print(f"paused {args.campaign_id}: {held:,} unsent message(s) held; nothing more of it leaves")
        elif args.action == "resume":
            released = campaign_control.resume(args.campaign_id, actor=by, now=now, override_guard=args.override_guard)
            print(f"resumed {args.campaign_id}: {released:,} message(s) back in the queue")
        elif args.action == "cancel":
            skipped = campaign_control.cancel(args.campaign_id, actor=by, now=now, reason=args.why)
            print(f"cancelled {args.campaign_id}: {skipped:,} unsent message(s) skipped (campaign_cancelled)")
    except (campaigns.CampaignError, SegmentError) as exc:
        sys.exit(str(exc))


def _list() -> None:
    from db import campaigns
    from db.session import transaction

    with transaction() as session:
        rows = campaigns.newest(session)
        if not rows:
            print("no campaigns")
        width = max((len(c.campaign_id) for c in rows), default=0)
        for c in rows:
            when = f"{c.scheduled_at:%Y-%m-%d %H:%M} UTC" if c.scheduled_at else "unscheduled"
            print(f"{c.campaign_id:<{width}}  {c.status:<9}  {when:<20}  {c.segment or c.template_type:<18}  "
                  f"{c.campaign_name}")


def show(campaign_id: str, as_json: bool = False, indent: str = "") -> None:
    """A campaign as `tutormax campaign show` prints it (or its JSON)."""
    from db import campaigns
    from db.session import transaction
    from tasks.campaign_winner import verdict_markdown

    with transaction() as session:
        campaign = campaigns.by_id(session, campaign_id)
        if campaign is None:
            sys.exit(f"no campaign {campaign_id!r} (tutormax campaign list shows them)")
        shown = campaigns.describe(session, campaign)
        verdict = verdict_markdown(campaign) if campaign.ab_test_enabled else None
    if as_json:
        print(json.dumps(shown, indent=2, default=str))
        return
    lines = [f"{shown['campaign_id']}: {shown['campaign_name']} ({shown['status']})",
             f"  audience {shown['segment']}{' ' + shown['segment_value'] if shown['segment_value'] else ''}, "
             f"{shown['category']}, priority {shown['priority']}"]
    lines += [f"  subject {variant}: {subject}" for variant, subject in shown["subjects"].items()]
    if shown["paused_reason"]:
        lines.append(f"  paused: {shown['paused_reason']}")
    lines.append("  " + ", ".join(f"{k} {v:,}" for k, v in shown["counts"].items()))
    if shown["excluded"]:
        lines.append("  excluded: " + ", ".join(f"{k} {v:,}" for k, v in shown["excluded"].items()))
    if verdict:
        said = [line for line in verdict.replace("**", "").splitlines() if line.strip()]  # Markdown, for a terminal
        lines += ["  A/B: " + said[0]] + [f"    {line}" for line in said[1:]]
    lines += [f"  {t['at'][:16].replace('T', ' ')} UTC  {t['from'] or 'created'} -> {t['to']}  by {t['by']}"
              + (f": {t['reason']}" if t["reason"] else "") for t in shown["transitions"]]
    print("\n".join(indent + line for line in lines))


def add_parser(sub) -> None:
    """The `campaign` command and its actions."""
    from db.segments import SEGMENTS

    p = sub.add_parser("campaign", help="announcements to a segment: create, list, show, schedule, pause, resume, cancel")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("create", help="a new campaign (a draft, or scheduled with --at); prints its id last")
    q.add_argument("--name", required=True)
    q.add_argument("--segment", required=True, metavar="SEGMENT[:VALUE]",
                   help="; ".join(f"{s.name}{':' + s.value.upper() if s.value else ''}: {s.description}"
                                  for s in SEGMENTS.values()))
    q.add_argument("--subject", required=True)
    q.add_argument("--preheader", help="the preview line an inbox shows beside the subject")
    q.add_argument("--body-file", required=True, metavar="FILE.md", help="the body, in Markdown")
    q.add_argument("--category", default="marketing_emails", choices=["marketing_emails", "system_notifications"],
                   help="the preference that lets a recipient opt out (default marketing_emails; service notices: "
                        "system_notifications)")
    q.add_argument("--priority", default="low", choices=PRIORITIES, help="its place in the queue (default low)")
    q.add_argument("--at", help="when to send, ISO (read in TIMEZONE without a zone); without it, a draft")
    q.add_argument("--by", help="who (default: your user name)")
    ab = q.add_argument_group("A/B test", "send a test portion two ways, then the winner to the rest")
    ab.add_argument("--ab-test-fraction", type=float, help="the share of the audience in the test (e.g. 0.2)")
    ab.add_argument("--ab-weights", help="the split of the test, e.g. a=0.5,b=0.5 (a is the control)")
    ab.add_argument("--winner-after", default="4h", help="how long after the test is sent to decide (default 4h)")
    ab.add_argument("--winner-metric", default="clicks", choices=["clicks", "human_opens"])
    ab.add_argument("--ab-fallback", default="a", choices=["a", "b"],
                    help="what the rest get when no variant wins significantly (default a, the control)")
    ab.add_argument("--subject-b")
    ab.add_argument("--preheader-b")
    ab.add_argument("--body-file-b", metavar="FILE.md")
    actions.add_parser("list", help="campaigns, newest first")
    q = actions.add_parser("show", help="a campaign: status, counts from its messages, A/B verdict, history")
    q.add_argument("campaign_id")
    q.add_argument("--json", action="store_true")
    q = actions.add_parser("preview", help="how many it reaches now, and who is excluded and why")
    q.add_argument("campaign_id")
    q = actions.add_parser("schedule", help="schedule a draft, or move a scheduled campaign's time")
    q.add_argument("campaign_id")
    q.add_argument("--at", help="ISO time (read in TIMEZONE without a zone); default now")
    q.add_argument("--by")
    for action, text in (("pause", "no new message of it leaves from the next claim on"),
                         ("cancel", "its unsent messages are skipped (campaign_cancelled); final")):
        q = actions.add_parser(action, help=text)
        q.add_argument("campaign_id")
        q.add_argument("--why", help="kept with the change")
        q.add_argument("--by")
    q = actions.add_parser("resume", help="continue where it stopped")
    q.add_argument("campaign_id")
    q.add_argument("--override-guard", action="store_true",
                   help="resume a campaign the reputation guard paused (having looked at why)")
    q.add_argument("--by")
    p.set_defaults(func=cmd_campaign)
