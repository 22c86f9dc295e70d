"""A claimed message to bytes ready for SMTP: rendered, links tracked, MIME built, DKIM-signed."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from jinja2 import TemplateError

from db import outbox
from tasks import email_types, mime
from tasks.dkim import signer_for
from tasks.mime import Envelope
from tasks.render import TemplateMissing, get_renderer, message_context, template_name, track
from tutormax.links import Links
from tutormax.settings import Settings
from tutormax.verp import verp_for


class Composer:
    """Renders and builds one claimed message at a time; one that cannot be built fails with a reason.

    Signing is separate (sign()), so the caller can sign one message while the server reads another.
    """

    def __init__(self, settings: Settings, now: datetime | None) -> None:
        self.settings, self.now = settings, now
        self.renderer = get_renderer(settings.timezone)
        self.links = Links(settings)
        self.signer = signer_for(settings.dkim_domain, settings.dkim_selector,
                                 settings.dkim_private_key.get_secret_value())
        self.verp = verp_for(settings.bounce_address, settings.secret_bytes())
        self.render_ms: list[float] = []

    def __call__(self, message: outbox.Claimed) -> tuple[Envelope, str] | str:
        """(envelope, subject), or the reason it cannot be sent."""
        settings, links = self.settings, self.links
        at = self.now or datetime.now(timezone.utc)
        try:
            started = time.perf_counter()
            context = message_context(
                template_type=message.template_type, message_id=message.message_id,
                recipient_name=message.recipient_name, metadata=message.message_metadata,
                settings=settings, links=links, now=at,
            )
            variant = None if email_types.get(message.template_type).variants_in_content else message.ab_variant
            name = template_name(message.template_version, variant)
            rendered = self.renderer.render(message.template_type, name, context)
            rendered = track(rendered, links, message.message_id, {context["unsubscribe_url"], context["preferences_url"]})
            self.render_ms.append((time.perf_counter() - started) * 1000)
            envelope = mime.build(
                message_id=message.message_id, idempotency_key=message.idempotency_key,
                from_email=settings.smtp_from_email, from_name=settings.smtp_from_name,
                to_email=message.recipient_email, to_name=message.recipient_name,
                subject=rendered.subject, html=rendered.html, text=rendered.text,
                unsubscribe_url=context["unsubscribe_url"],
                list_id=f"{message.template_type.replace('_', '-')}.{settings.from_domain}",
                date=at,
            )
            if self.verp is not None:  # the envelope sender names the message: From and Reply-To stay as they are
                envelope = Envelope(envelope.message_id, self.verp.address(message.message_id), envelope.recipient,
                                    envelope.data)
        except mime.InvalidRecipient as exc:
            return str(exc)
        except (TemplateMissing, TemplateError, LookupError, ValueError) as exc:
            return f"cannot render {message.template_type}: {type(exc).__name__}: {exc}"
        return envelope, rendered.subject

    def sign(self, envelope: Envelope) -> Envelope:
        """The envelope with its DKIM-Signature, when DKIM is configured (OpenSSL signs without the GIL)."""
        if self.signer is None:
            return envelope
        return Envelope(envelope.message_id, envelope.sender, envelope.recipient, self.signer.sign(envelope.data))
