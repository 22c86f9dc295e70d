"""Every SMTP answer to one verdict, by its reply code, its enhanced status code (RFC 3463) and the step it answered.

A 5xx is not always the recipient's fault: only an answer about the address suppresses the
address. Policy and reputation blocks, a refused message and a server in trouble leave the
recipient alone. The rules are one ordered table (RULES); the first that matches decides.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    """What delivery does with a message after the server's answer."""

    SENT = "sent"          # 2xx
    DEFERRED = "deferred"  # try again later: every 4xx, a full mailbox
    BOUNCED = "bounced"    # the address is bad: a hard bounce, the address suppressed
    BLOCKED = "blocked"    # policy or reputation (5.7.x): failed with the reason, the address kept
    REJECTED = "rejected"  # the message itself (5.6.x, too big): failed, the address kept
    SERVER = "server"      # the server or the protocol: deferred, never suppressed; several in a row stop the batch


class Stage(StrEnum):
    """The step of the SMTP conversation an answer belongs to."""

    CONNECT = "connect"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"  # the DATA command or the end of the content: smtplib does not tell them apart


@dataclass(frozen=True)
class Reply:
    """One answer, read: its code, enhanced status (None when the server gave none), verdict and why."""

    code: int
    text: str
    stage: Stage
    status: str | None
    verdict: Verdict
    rule: str

    @property
    def slow_down(self) -> bool:
        """421 or 4.7.x: the server asks us to send less, or later."""
        return self.code == 421 or (self.status or "").startswith("4.7.")

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


# RFC 3463 2: class.subject.detail, subject and detail 1-3 digits without leading zeros, first in the text
_STATUS = re.compile(r"^([245])\.(?:0|[1-9]\d{0,2})\.(?:0|[1-9]\d{0,2})(?=\s|$)")
# without an enhanced code, the words of the common "no such user" answers (Yahoo's "554 delivery
# error: dd This user doesn't have a yahoo.com account", Yahoo's "552 1 ... mailbox not found", Exim's
# "550 Unrouteable address") and of policy refusals (Exim's "Sender verify failed", DNSBL listings)
_NO_SUCH_USER = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient)|does ?n[o']t have an? [\w.-]+ account"
    r"|(mailbox|account|address)( is)? (not found|unavailable|disabled|does not exist)|unrouteable address"
    r"|recipient (not found|unknown|address rejected)|invalid (recipient|mailbox)", re.IGNORECASE)
# our own sender refused in words: Postfix checks the sender at RCPT ("Sender address rejected"), Exim
# calls back to verify it ("Sender verify failed"); neither is the recipient's fault
_SENDER = re.compile(r"sender address rejected|sender verif|bad outbound sender", re.IGNORECASE)
_POLICY = re.compile(
    r"blocked|black ?list|block ?list|spamhaus|\bspam\b|policy|prohibit|reputation|dmarc|\bspf\b"
    r"|relay(ing)? (access )?denied|not permitted|too many (messages|connections)", re.IGNORECASE)


@dataclass(frozen=True)
class Rule:
    """One row of the table: a condition over (code, status, stage, text) and the verdict it gives."""

    name: str
    verdict: Verdict
    test: Callable[[int, str | None, Stage, str], bool]


def _status_in(*prefixes: str) -> Callable[[int, str | None, Stage, str], bool]:
    return lambda code, status, stage, text: status is not None and status.startswith(prefixes)


RULES: tuple[Rule, ...] = (
    Rule("2xx: accepted", Verdict.SENT, lambda c, s, st, t: 200 <= c < 300),
    Rule("421: the server is closing the connection", Verdict.SERVER, lambda c, s, st, t: c == 421),
    Rule("5xx at connect or to MAIL: the server refuses us or our sender, not the recipient", Verdict.SERVER,
         lambda c, s, st, t: c >= 500 and st in (Stage.CONNECT, Stage.MAIL)),
    Rule("4.2.2 / 5.2.2 or 552 to RCPT without a code: mailbox full, try later", Verdict.DEFERRED,
         lambda c, s, st, t: s in ("4.2.2", "5.2.2") or (c == 552 and s is None and st is Stage.RCPT
                                                        and not _NO_SUCH_USER.search(t))),
    Rule("4xx: try again later", Verdict.DEFERRED, lambda c, s, st, t: 400 <= c < 500),
    Rule("500-504: the server did not take our command", Verdict.SERVER, lambda c, s, st, t: 500 <= c <= 504),
    Rule("our sender refused, in words", Verdict.SERVER, lambda c, s, st, t: _SENDER.search(t) is not None),
    Rule("5.1.7 / 5.1.8: our sender address, not the recipient's", Verdict.SERVER, _status_in("5.1.7", "5.1.8")),
    Rule("5.1.x: the address is bad", Verdict.BOUNCED, _status_in("5.1.")),
    Rule("5.2.1: the mailbox is disabled", Verdict.BOUNCED, _status_in("5.2.1")),
    # Microsoft 365 refuses an unknown recipient of its tenants with 5.4.1 at RCPT
    Rule("5.4.1 'Recipient address rejected' to RCPT: Microsoft 365's unknown recipient", Verdict.BOUNCED,
         lambda c, s, st, t: s == "5.4.1" and st is Stage.RCPT and "recipient address rejected" in t.lower()),
    Rule("5.3.4 / 5.2.3: the message is too big", Verdict.REJECTED, _status_in("5.3.4", "5.2.3")),
    Rule("5.6.x: the message's content", Verdict.REJECTED, _status_in("5.6.")),
    Rule("5.7.x: policy or reputation", Verdict.BLOCKED, _status_in("5.7.")),
    Rule("5.3.x / 5.4.x / 5.5.x: the mail system, routing or protocol", Verdict.SERVER,
         _status_in("5.3.", "5.4.", "5.5.")),
    Rule("5.2.x: the mailbox refuses this message", Verdict.REJECTED, _status_in("5.2.")),
    # no enhanced code, or only the undefined X.0.0: the code, the step and the words decide
    Rule("no such user, in words", Verdict.BOUNCED, lambda c, s, st, t: _NO_SUCH_USER.search(t) is not None),
    Rule("a policy refusal, in words", Verdict.BLOCKED, lambda c, s, st, t: _POLICY.search(t) is not None),
    Rule("550 / 551 / 553 to RCPT", Verdict.BOUNCED, lambda c, s, st, t: c in (550, 551, 553) and st is Stage.RCPT),
    Rule("any other 5xx: failed, the address kept", Verdict.REJECTED, lambda c, s, st, t: True),
)


def enhanced_status(code: int, text: str) -> str | None:
    """The RFC 3463 status at the head of the text, if its class agrees with the reply code."""
    match = _STATUS.match(text)
    if match is None or match.group(1) != str(code)[0]:
        return None
    return match.group(0)


def classify(code: int, text: str, stage: Stage) -> Reply:
    """The verdict of the first rule in RULES that matches this answer."""
    status = enhanced_status(code, text)
    # X.0.0 is "other undefined status": it says no more than the reply code
    decisive = None if status is None or status.endswith(".0.0") else status
    for rule in RULES:
        if rule.test(code, decisive, stage, text):
            return Reply(code, text, stage, status, rule.verdict, rule.name)
    raise AssertionError("the last rule matches everything")
