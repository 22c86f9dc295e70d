"""VERP: each message's envelope sender carries a signed tag, so a bounce finds its message however mangled its body.

BOUNCE_ADDRESS=bounces@bounce.example sends message 42 from bounces+<tag>@bounce.example, where the
tag is the message id and an HMAC of it, in lower-case base32: some mail systems lower-case the
addresses they bounce to, and base32 survives that where base64 would not.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct

_ID = struct.Struct(">Q")
_MAC_BYTES = 10  # 80 bits: a forged tag could only mark one of our messages bounced


class Verp:
    """Makes and reads the tagged envelope senders of one bounce address."""

    def __init__(self, bounce_address: str, secret: bytes) -> None:
        self.local, _, self.domain = bounce_address.rpartition("@")
        self._key = hashlib.sha256(b"tutormax-verp\0" + secret).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.digest(self._key, payload, "sha256")[:_MAC_BYTES]

    def address(self, message_id: int) -> str:
        """The envelope sender for this message: local+tag@domain."""
        payload = _ID.pack(message_id)
        tag = base64.b32encode(payload + self._mac(payload)).decode("ascii").rstrip("=").lower()
        return f"{self.local}+{tag}@{self.domain}"

    def message_id(self, address: str) -> int | None:
        """The message a tagged address was made for, or None for any address this one did not make."""
        local, _, domain = address.strip().strip("<>").rpartition("@")
        base, plus, tag = local.partition("+")
        if not plus or base.lower() != self.local.lower() or domain.lower() != self.domain.lower():
            return None
        try:
            raw = base64.b32decode(tag.upper() + "=" * (-len(tag) % 8))
        except (binascii.Error, ValueError):
            return None
        payload, mac = raw[:_ID.size], raw[_ID.size:]
        if len(payload) != _ID.size or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        return _ID.unpack(payload)[0]


def verp_for(bounce_address: str, secret: bytes) -> Verp | None:
    """The codec of BOUNCE_ADDRESS, or None when it is unset (the envelope sender is then the From address)."""
    return Verp(bounce_address, secret) if bounce_address else None
