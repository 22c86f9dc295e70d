"""Tracker URLs for one message: built from signed tokens, never from addresses."""

from __future__ import annotations

import zlib

from tutormax.settings import Settings
from tutormax.tokens import Purpose, Signer


class Links:
    """Builds the tracker URLs that go into an email."""

    def __init__(self, settings: Settings) -> None:
        self.base = settings.tracking_base_url
        self.signer = Signer(settings.secret_bytes())

    def url(self, purpose: Purpose, message_id: int, link: int = 0, extra: bytes = b"") -> str:
        return f"{self.base}/{purpose.value}/{self.signer.sign(purpose, message_id, link, extra)}"

    def unsubscribe(self, message_id: int) -> str:
        return self.url(Purpose.UNSUBSCRIBE, message_id)

    def preferences(self, message_id: int) -> str:
        return self.url(Purpose.PREFERENCES, message_id)

    def feedback(self, message_id: int) -> str:
        return self.url(Purpose.FEEDBACK, message_id)

    def open_pixel(self, message_id: int) -> str:
        return f"{self.url(Purpose.OPEN, message_id)}.gif"

    def click(self, message_id: int, name: str, target: str) -> str:
        """A tracked link: the signed token carries the link's name and its target."""
        return self.url(Purpose.CLICK, message_id, link_id(name), f"{name}\n{target}".encode())

    def survey(self, message_id: int) -> str:
        return self.url(Purpose.SURVEY, message_id)


def link_id(name: str) -> int:
    """A template link's stable numeric id, from its data-link-id name."""
    return zlib.crc32(name.encode())
