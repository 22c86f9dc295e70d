"""Signed, compact URL tokens: HMAC-SHA256 over (purpose, message id, link id).

No email address or other personal data ever goes into a token; the purpose is
part of the MAC, so a click token cannot be replayed as an unsubscribe token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import StrEnum


class Purpose(StrEnum):
    """One purpose per tracker route."""

    OPEN = "o"
    CLICK = "c"
    UNSUBSCRIBE = "u"
    PREFERENCES = "p"
    FEEDBACK = "f"
    SURVEY = "s"


_HEADER = struct.Struct(">QI")  # message id, link id
_MAC_BYTES = 12                 # 96-bit tag: unforgeable in practice, keeps URLs short
MAX_TOKEN_CHARS = 4096          # a click token carries its target URL; nothing legitimate is longer


def _encode(raw: bytes) -> str:
    """The one spelling of these bytes in a token: URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class BadToken(ValueError):
    """A token that is malformed, truncated, tampered with or for another purpose."""


@dataclass(frozen=True)
class TokenData:
    message_id: int
    link_id: int
    extra: bytes = b""  # signed bytes carried in the token (a click's link name and target)


class Signer:
    """Makes and checks tokens with one secret key."""

    def __init__(self, key: bytes) -> None:
        # a derived key, so the signing key is never the raw SECRET_KEY used elsewhere
        self._key = hashlib.sha256(b"tutormax-url-token\0" + key).digest()

    def _mac(self, purpose: Purpose, payload: bytes) -> bytes:
        return hmac.digest(self._key, purpose.value.encode() + payload, "sha256")[:_MAC_BYTES]

    def sign(self, purpose: Purpose, message_id: int, link_id: int = 0, extra: bytes = b"") -> str:
        payload = _HEADER.pack(message_id, link_id) + extra
        raw = payload + self._mac(purpose, payload)
        return _encode(raw)

    def verify(self, purpose: Purpose, token: str) -> TokenData:
        if not isinstance(token, str) or not 32 <= len(token) <= MAX_TOKEN_CHARS or not token.isascii():
            raise BadToken("malformed token")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise BadToken("malformed token") from None
        # the decoder is lenient (padding, "+" and "/", characters it skips, unused low bits in the
        # final character): only the one spelling sign() makes is a token
        if _encode(raw) != token:
            raise BadToken("malformed token")
        if len(raw) < _HEADER.size + _MAC_BYTES:
            raise BadToken("truncated token")
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(purpose, payload)):
            raise BadToken("bad signature")
        message_id, link_id = _HEADER.unpack(payload[: _HEADER.size])
        return TokenData(message_id, link_id, payload[_HEADER.size :])
