"""Reading one bounce-mailbox report: a DSN, a non-standard bounce, an ARF complaint, an auto-reply, or unknown.

The first rule that decides wins:
1. an RFC 3464 DSN (multipart/report with a message/delivery-status part): each recipient's own
   Action, Status and Diagnostic-Code, judged by the same rule table as a synchronous SMTP answer;
2. an RFC 5965 ARF report (multipart/report with a message/feedback-report part): a complaint;
3. an auto-reply (RFC 3834 Auto-Submitted and the common vendor headers), unless it comes from a
   mailer daemon: bounces carry Auto-Submitted too, and must reach rule 4;
4. flufl.bounce's detectors, for the many bounces that are not DSNs (qmail, Yahoo, old Exim...):
   permanent failures are hard, temporary ones soft;
5. anything else: unknown.
Whatever the kind, our message is looked for: a VERP address the codec verifies, else our own
Message-ID (the returned message's, a copy quoted in a plain-text bounce, an auto-reply's
In-Reply-To). Garbage never raises: it is unknown.
"""

from __future__ import annotations

import email
import hashlib
import re
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses
from functools import lru_cache

from flufl.bounce._scan import _DETECTORS  # the package's own ordered list: all_failures() hides which matched

from tasks.smtp_replies import Stage, Verdict, classify
from tutormax.verp import Verp

KINDS = ("hard", "soft", "complaint", "auto_reply", "unknown")


@dataclass(frozen=True)
class RecipientResult:
    """What a report says happened for one recipient."""

    address: str               # lower-cased, as the report names it (Final-Recipient, the bounced address...)
    kind: str                  # "hard" | "soft" | "complaint" | "unknown" (see KINDS)
    action: str                # RFC 3464 Action: "failed" | "delayed" | "delivered" | "relayed" | "expanded"; "" if none
    status: str | None         # the RFC 3463 enhanced status ("5.1.1"), None if the report gives none
    diagnostic: str | None     # the remote server's words (Diagnostic-Code's text), whitespace collapsed, <= 500 chars


@dataclass(frozen=True)
class ParsedReport:
    """One report, read: its kind, whom it is about, and our message, when it names one."""

    kind: str                            # the report's kind: hard if any recipient's is, else its first's (KINDS)
    recipients: tuple[RecipientResult, ...]
    message_id: int | None               # our message: from the VERP tag (verified), else our Message-ID's number
    original_message_id: str | None      # the returned message's Message-ID header, for the caller to check
    report_id: str                       # the report's own Message-ID (or a hash of its bytes when it has none)
    detector: str                        # "dsn" | "arf" | "auto_reply" | "flufl:<detector>" | "none"
    feedback_type: str | None = None     # an ARF report's Feedback-Type ("abuse", "fraud", ...)


DIAGNOSTIC_MAX = 500
FLUFL_BYTES = 64 * 1024  # flufl.bounce reads no further into a report
_ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")
_STATUS_FIELD = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}(?![0-9.])")
# a Diagnostic-Code's SMTP reply: "550 5.1.1 ..." or the first line of a multi-line one, "550-5.1.1 ..."
_REPLY = re.compile(r"([2-5][0-9][0-9])(?:[ -]+|$)(?:([245]\.[0-9]{1,3}\.[0-9]{1,3})(?: +|$))?")
_DIAGNOSTIC_TYPE = re.compile(r"^\s*[A-Za-z][\w-]*\s*;")
_RETURNED = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers")
# where a report names the address it was sent to (ours: the VERP tag), most telling first
_REPORT_VERP_HEADERS = ("to", "delivered-to", "x-original-to", "envelope-to", "return-path")
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery (sub)?system", re.IGNORECASE)
# Outlook's X-Auto-Response-Suppress asks others not to auto-reply; Outlook sets it on ordinary
# mail too, so it proves nothing about the message that carries it
_AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond")


def parse(raw: bytes, verp: Verp | None, from_domain: str) -> ParsedReport:
    """Read one report (the bytes of an email): see the module docstring for the order of the rules."""
    # compat32 (the default policy) parses several times faster than policy.default, and
    # flufl.bounce's detectors expect its Message
    msg = email.message_from_bytes(raw)
    kind, recipients, detector, feedback_type = _judge(msg, raw)
    message_id, original = _our_message(msg, raw, verp, from_domain)
    return ParsedReport(kind, recipients, message_id, original, _report_id(msg, raw), detector, feedback_type)


_Judgement = tuple[str, tuple[RecipientResult, ...], str, str | None]  # kind, recipients, detector, feedback type


def _judge(msg: Message, raw: bytes) -> _Judgement:
    if msg.get_content_type() == "multipart/report" and msg.is_multipart():
        for part in msg.get_payload():
            subtype = part.get_content_type()
            if subtype in ("message/delivery-status", "message/global-delivery-status"):
                recipients = tuple(_dsn_recipients(part))
                if recipients:
                    return _overall(recipients), recipients, "dsn", None
            elif subtype == "message/feedback-report":
                return _arf(msg, part)
    if _is_auto_reply(msg):
        return "auto_reply", (), "auto_reply", None
    # flufl's heuristics read every line dozens of times (seconds for a 10 MB message); a bounce
    # says what failed near its top, before the returned message
    recipients, detector = _flufl(msg if len(raw) <= FLUFL_BYTES else email.message_from_bytes(raw[:FLUFL_BYTES]))
    if recipients:
        return _overall(recipients), recipients, detector, None
    return "unknown", (), "none", None


def _overall(recipients: tuple[RecipientResult, ...]) -> str:
    return "hard" if any(r.kind == "hard" for r in recipients) else recipients[0].kind


# --- RFC 3464 DSN ---------------------------------------------------------------------------------

def _dsn_recipients(part: Message) -> list[RecipientResult]:
    results = []
    for fields in _status_blocks(part):
        address = _address(fields.get("final-recipient") or fields.get("original-recipient") or "")
        if address:
            results.append(_dsn_recipient(address, fields))
    return results


def _status_blocks(part: Message) -> list[dict[str, str]]:
    """The delivery-status part's header blocks (the per-message one, then one per recipient)."""
    payload = part.get_payload()
    if not isinstance(payload, list):  # a part the parser left as text
        data = part.get_payload(decode=True)
        return _text_blocks(data.decode("utf-8", "replace") if isinstance(data, bytes) else "")
    blocks = [_fields(block) for block in payload if isinstance(block, Message)]
    if part.get_content_subtype() != "delivery-status" and payload and isinstance(payload[0], Message):
        # compat32 splits only message/delivery-status into blocks: a global one (RFC 6533) comes as
        # one message, the per-message fields, whose body holds the recipients' blocks
        body = payload[0].get_payload(decode=True)
        blocks += _text_blocks(body.decode("utf-8", "replace") if isinstance(body, bytes) else "")
    return blocks


def _fields(block: Message) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in block.raw_items():
        fields.setdefault(name.lower(), _utf8(value))
    return fields


def _text_blocks(text: str) -> list[dict[str, str]]:
    blocks = []
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", text):
        fields: dict[str, str] = {}
        for line in re.sub(r"\r?\n[ \t]+", " ", chunk).splitlines():
            name, colon, value = line.partition(":")
            if colon:
                fields.setdefault(name.strip().lower(), value.strip())
        if fields:
            blocks.append(fields)
    return blocks


def _dsn_recipient(address: str, fields: dict[str, str]) -> RecipientResult:
    match = re.match(r"\s*([a-z]+)", fields.get("action", "").lower())  # "failed (bad mailbox)" happens
    action = match.group(1) if match and match.group(1) in _ACTIONS else ""
    match = _STATUS_FIELD.match(fields.get("status", "").strip())
    status = match.group(0) if match else None
    diagnostic = _diagnostic(fields.get("diagnostic-code", ""))
    reply = _REPLY.match(diagnostic or "")
    detail = reply.group(2) if reply else None
    # Exim says 5.0.0 and leaves the detail to the server's words; a detail of another class than the
    # Status (a 4.x.x given up on) does not change what the report says happened
    if detail and not detail.endswith(".0.0") and (status is None or status == detail[0] + ".0.0"):
        status = detail
    if action == "failed":
        kind = "hard" if _verdict(status, diagnostic) is Verdict.BOUNCED else "soft"
    else:
        kind = "soft" if action == "delayed" else "unknown"  # delayed: a warning, the relay still retries
    return RecipientResult(address, kind, action, status, diagnostic)


def _diagnostic(value: str) -> str | None:
    """Diagnostic-Code's text: its type ("smtp;") dropped, one line, a multi-line reply's repeated codes too."""
    text = " ".join(_DIAGNOSTIC_TYPE.sub("", value, count=1).split())
    reply = _REPLY.match(text)
    if reply:
        code, enhanced = reply.group(1), reply.group(2)
        # Gmail's "550-5.1.1 The email account ... Please try 550-5.1.1 double-checking ...": the
        # reply as one text, the way a synchronous answer reads
        again = re.compile("(?<= )" + code + "[ -]" + (re.escape(enhanced) + " " if enhanced else ""))
        text = " ".join(filter(None, (code, enhanced, again.sub("", text[reply.end():]))))
    return text[:DIAGNOSTIC_MAX] or None


def _verdict(status: str | None, diagnostic: str | None) -> Verdict:
    """The verdict the synchronous rule table gives this failure at RCPT."""
    text = diagnostic or ""
    reply = _REPLY.match(text)
    if reply:
        code, words = int(reply.group(1)), text[len(reply.group(1)) + 1:]
        if reply.group(2) is None and status and status[0] == reply.group(1)[0]:
            words = f"{status} {words}"  # the DSN's Status speaks for a server that gave no enhanced code
    else:
        # no SMTP reply (a local failure, "X-Postfix; ..."): the status alone, with a code that says
        # nothing more than its class; 550 would let the table call any unexplained failure a bad address
        code = 450 if status and status[0] == "4" else 554
        words = f"{status} {text}" if status else text
    return classify(code, words, Stage.RCPT).verdict


# --- RFC 5965 ARF ---------------------------------------------------------------------------------

def _arf(msg: Message, part: Message) -> _Judgement:
    report = _feedback_fields(part)
    fields = _fields(report)
    feedback_type = fields.get("feedback-type", "").strip().lower() or None
    addresses = [_address(str(value)) for value in report.get_all("original-rcpt-to", [])]
    if not any(addresses):
        returned = _returned_headers(msg)
        to = [_header(returned, "to")] if returned is not None else []
        addresses = [_address(address) for _name, address in getaddresses(to)]
    recipients = tuple(RecipientResult(a, "complaint", "", None, None) for a in dict.fromkeys(addresses) if a)
    return "complaint", recipients, "arf", feedback_type


def _feedback_fields(part: Message) -> Message:
    """The message/feedback-report part's fields: compat32 parses them as the headers of one message."""
    payload = part.get_payload()
    return payload[0] if isinstance(payload, list) and payload and isinstance(payload[0], Message) else part


# --- auto-replies and flufl.bounce ----------------------------------------------------------------

def _is_auto_reply(msg: Message) -> bool:
    if msg.get("x-failed-recipients") is not None or _DAEMON.search(_header(msg, "from")):
        return False  # a bounce: mailer daemons mark their reports Auto-Submitted as well
    submitted = _header(msg, "auto-submitted").split(";")[0].strip().lower()
    if submitted and submitted != "no":
        return True
    if any(msg.get(name) is not None for name in _AUTO_REPLY_HEADERS):
        return True
    return _header(msg, "precedence").strip().lower() == "auto_reply"


def _flufl(msg: Message) -> tuple[tuple[RecipientResult, ...], str]:
    """flufl.bounce's all_failures(), keeping the name of the detector that matched."""
    for detector in _DETECTORS:
        try:
            temporary, permanent = detector().process(msg)
        except Exception:  # a third-party heuristic tripping on garbage: the next detector may still read it
            continue
        if temporary or permanent:
            recipients = [RecipientResult(a, "hard", "failed", None, None) for a in _decoded(permanent)]
            recipients += [RecipientResult(a, "soft", "delayed", None, None) for a in _decoded(temporary - permanent)]
            if recipients:
                return tuple(recipients), f"flufl:{detector.__name__}"
    return (), "none"


def _decoded(addresses: frozenset[bytes]) -> list[str]:
    return sorted({a for a in (_address(raw.decode("ascii", "replace")) for raw in addresses) if a})


# --- our message ----------------------------------------------------------------------------------

def _our_message(msg: Message, raw: bytes, verp: Verp | None, from_domain: str) -> tuple[int | None, str | None]:
    returned = _returned_headers(msg)
    original = _our_message_id(msg, returned, raw, from_domain)
    message_id = _verp_message_id(msg, returned, raw, verp) if verp is not None else None
    if message_id is None and original is not None:
        message_id = int(original[1:].partition(".")[0])
    return message_id, original


def _verp_message_id(msg: Message, returned: Message | None, raw: bytes, verp: Verp) -> int | None:
    candidates = [str(v) for name in _REPORT_VERP_HEADERS for v in msg.get_all(name, [])]
    for part in msg.get_payload() if msg.is_multipart() else ():  # an ARF report's parts
        if part.get_content_type() == "message/feedback-report":
            candidates += [str(v) for v in _feedback_fields(part).get_all("original-mail-from", [])]
    if returned is not None:
        candidates += [str(v) for name in ("return-path", "from") for v in returned.get_all(name, [])]
    for candidate in candidates:
        found = verp.message_id(_address(candidate))
        if found is not None:
            return found
    # anywhere else in the report (X-Postfix-Sender, a returned message quoted in a plain-text bounce):
    # only a tag the codec verifies counts, so a forged one is ignored wherever it stands
    for tag in _verp_pattern(verp.local, verp.domain).finditer(raw):
        found = verp.message_id(tag.group(0).decode("ascii"))
        if found is not None:
            return found
    return None


def _our_message_id(msg: Message, returned: Message | None, raw: bytes, from_domain: str) -> str | None:
    ours = _message_id_pattern(from_domain)
    if returned is not None:
        match = ours.fullmatch(_header(returned, "message-id").strip())
        if match:
            return match.group(0)
    # a non-MIME bounce quotes the returned message in its body; an auto-reply names ours in In-Reply-To
    quoted = _quoted_message_id(from_domain).search(raw)
    if quoted:
        return quoted.group(1).decode("ascii")
    for name in ("in-reply-to", "references"):
        match = ours.search(_header(msg, name))
        if match:
            return match.group(0)
    return None


def _returned_headers(msg: Message) -> Message | None:
    """The headers of the message a report returns (message/rfc822 or text/rfc822-headers), if any."""
    if not msg.is_multipart():
        return None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype not in _RETURNED:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            return payload[0] if payload and isinstance(payload[0], Message) else None
        data = part.get_payload(decode=True)
        return email.message_from_bytes(data, _class=Message) if isinstance(data, bytes) else None
    return None


@lru_cache(maxsize=8)
def _message_id_pattern(from_domain: str) -> re.Pattern[str]:
    return re.compile(r"<([0-9]{1,19})\.[0-9a-f]{16}@" + re.escape(from_domain) + ">", re.IGNORECASE)


@lru_cache(maxsize=8)
def _quoted_message_id(from_domain: str) -> re.Pattern[bytes]:
    domain = re.escape(from_domain.encode("ascii", "replace"))
    return re.compile(rb"^[ \t>]*Message-ID:[ \t]*(<[0-9]{1,19}\.[0-9a-f]{16}@" + domain + rb">)",
                      re.IGNORECASE | re.MULTILINE)


@lru_cache(maxsize=8)
def _verp_pattern(local: str, domain: str) -> re.Pattern[bytes]:
    return re.compile(re.escape(local.encode("ascii", "replace")) + rb"\+[a-z2-7]+@"
                      + re.escape(domain.encode("ascii", "replace")), re.IGNORECASE)


# --- small readers --------------------------------------------------------------------------------

def _header(msg: Message, name: str) -> str:
    value = msg.get(name)
    return "" if value is None else str(value)  # compat32 gives a Header object for 8-bit values


def _utf8(value: str) -> str:
    """A value the parser read with its 8-bit bytes escaped, as UTF-8 (an RFC 6533 report's addresses)."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _address(value: str) -> str:
    """'rfc822; <User@Example.com>' -> 'user@example.com'; '' for anything without an @."""
    kind, semicolon, rest = value.partition(";")
    if semicolon and "@" not in kind:
        value = rest
    bracketed = re.search(r"<([^<>]*)>", value)
    address = "".join((bracketed.group(1) if bracketed else value).split()).lower()
    return address if "@" in address.strip("@") else ""


def _report_id(msg: Message, raw: bytes) -> str:
    own = " ".join(_header(msg, "message-id").split())
    return own or "sha256:" + hashlib.sha256(raw).hexdigest()
