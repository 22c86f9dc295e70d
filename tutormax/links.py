"""Tracker URLs for one message: built from signed tokens, never from addresses."""

from __future__ import annotations

from tutormax.settings import Settings
from tutormax.tokens import Purpose, Signer


class Links:
    """Builds the tracker URLs that go into an email."""

    def __init__(self, settings: Settings) -> None:
        self.base = settings.tracking_base_url
        self.signer = Signer(settings.secret_bytes())

    def url(self, purpose: Purpose, message_id: int, link_id: int = 0) -> str:
        return f"{self.base}/{purpose.value}/{self.signer.sign(purpose, message_id, link_id)}"

    def unsubscribe(self, message_id: int) -> str:
        return self.url(Purpose.UNSUBSCRIBE, message_id)

    def preferences(self, message_id: int) -> str:
        return self.url(Purpose.PREFERENCES, message_id)

    def feedback(self, message_id: int) -> str:
        return self.url(Purpose.FEEDBACK, message_id)
