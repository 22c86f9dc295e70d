"""MIME: one multipart/alternative message as bytes, with the list headers mailbox providers require.

Built by hand from the stdlib's encoders rather than the email package's object
model: the result is the same RFC 5322/2045 text (tests parse it back with the
email package), at a tenth of the cost per message.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr

from email_validator import EmailNotValidError, validate_email

CRLF = "\r\n"


class InvalidRecipient(ValueError):
    """This message cannot be addressed (bad address, header injection); the batch goes on."""


@dataclass(frozen=True)
class Envelope:
    """What SMTP needs to send one built message; data's lines all end in CRLF."""

    message_id: int
    sender: str
    recipient: str
    data: bytes


# Plain ASCII addresses of the common shape pass without the full parser (a hot path:
# ~0.07 ms a message); anything else, IDNs and quoted local parts included, gets email-validator.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def checked_address(address: str | None) -> str:
    """The ASCII form of a valid address, or InvalidRecipient with the reason."""
    if not address:
        raise InvalidRecipient("no recipient address")
    if any(c in address for c in "\r\n\0"):
        raise InvalidRecipient("recipient address contains a line break")
    if len(address) <= 254 and _PLAIN_ADDRESS.fullmatch(address) and len(address.split("@")[0]) <= 64:
        return address
    try:
        valid = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidRecipient(f"invalid recipient address: {exc}") from None
    return valid.ascii_email or valid.normalized


def checked_name(name: str | None) -> str:
    if not name:
        return ""
    if any(c in name for c in "\r\n\0"):
        raise InvalidRecipient("recipient name contains a line break (header injection)")
    return name


def message_id_header(message_id: int, idempotency_key: str, domain: str) -> str:
    """Derived from the message, so a resend after a lost commit carries the same Message-ID."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
    return f"<{message_id}.{digest}@{domain}>"


def _header(name: str, value: str) -> str:
    if value.isascii() and len(name) + len(value) < 76:
        return f"{name}: {value}"  # nothing to fold or encode
    # Header folds long lines and encodes non-ASCII as RFC 2047 words
    charset = "us-ascii" if value.isascii() else "utf-8"
    encoded = Header(value, charset, header_name=name).encode(linesep=CRLF)
    return f"{name}: {encoded}"


def _address(name: str, email: str) -> str:
    return formataddr((name, email), charset="utf-8") if name else email


# RFC 5322 2.1.1: no line may exceed 998 octets, CRLF excluded
MAX_LINE = 998


def _body(body: str, boundary: str) -> tuple[bytes, bytes]:
    """(Content-Transfer-Encoding, the encoded body with CRLF line ends).

    An ASCII body whose lines fit goes as 7bit, unencoded: it costs nothing per
    message and stays readable. Anything else is quoted-printable, which keeps
    non-ASCII text mostly readable and wraps long lines; so is a body that
    contains the boundary (QP writes "=" as "=3D", so "--=_tm..." cannot survive
    it), lest text in a message end its part early.
    """
    lines = body.replace("\r\n", "\n").split("\n")
    if (body.isascii() and "\r" not in body and "\0" not in body and boundary not in body
            and max(map(len, lines)) <= MAX_LINE):
        return b"7bit", "\r\n".join(lines).encode("ascii")
    encoded = binascii.b2a_qp("\n".join(lines).encode("utf-8"))
    return b"quoted-printable", encoded.replace(b"\n", b"\r\n")


def _ascii_html(html: str) -> str:
    """Non-ASCII characters after the stylesheet as character references: the same page, in 7bit.

    The inliner writes entities such as the preheader's &#8199; back as raw characters;
    references would not be read back inside <style>, so a stylesheet must be ASCII already.
    """
    if html.isascii():
        return html
    head, style_end, rest = html.rpartition("</style>")
    if not (head + style_end).isascii():
        return html  # quoted-printable it is
    return head + style_end + rest.encode("ascii", "xmlcharrefreplace").decode("ascii")


def build(
    *,
    message_id: int,
    idempotency_key: str,
    from_email: str,
    from_name: str,
    to_email: str | None,
    to_name: str | None,
    subject: str,
    html: str,
    text: str,
    unsubscribe_url: str,
    list_id: str,
    date: datetime,
) -> Envelope:
    """multipart/alternative (text, then HTML) with RFC 8058 one-click unsubscribe headers."""
    recipient = checked_address(to_email)
    name = checked_name(to_name)
    domain = from_email.rsplit("@", 1)[1]
    boundary = f"=_tm{message_id}_{hashlib.sha1(idempotency_key.encode()).hexdigest()[:12]}"
    headers = [
        f"From: {_address(from_name, from_email)}",
        f"To: {_address(name, recipient)}",
        _header("Subject", subject.replace("\r", " ").replace("\n", " ")),
        f"Date: {format_datetime(date)}",
        f"Message-ID: {message_id_header(message_id, idempotency_key, domain)}",
        f"List-ID: <{list_id}>",  # RFC 2919: the label in angle brackets
        f"List-Unsubscribe: <{unsubscribe_url}>",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
    ]
    part = b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: %s\r\n\r\n%s'
    delimiter = f"\r\n--{boundary}\r\n".encode()
    data = b"".join(
        (
            "\r\n".join(headers).encode("ascii"),
            b"\r\n",
            delimiter,
            part % (b"plain", *_body(text, boundary)),
            delimiter,
            part % (b"html", *_body(_ascii_html(html), boundary)),
            f"\r\n--{boundary}--\r\n".encode(),
        )
    )
    return Envelope(message_id=message_id, sender=from_email, recipient=recipient, data=data)
