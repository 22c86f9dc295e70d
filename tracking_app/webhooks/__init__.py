"""Provider webhooks (Amazon SES through SNS, SendGrid, Postmark): each event becomes report lines, recorded once.

Each provider's events are mapped at the edge into db.reports' kinds (as django-anymail maps
them into its one vocabulary) and kept with their payload; a webhook whose secret is not set
answers 404, and a bad signature or password is refused before the body is parsed.
"""

from __future__ import annotations

from flask import Blueprint, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from tracking_app.app import ERROR_PAGES
from tracking_app.webhooks import postmark, sendgrid, ses
from tracking_app.webhooks.common import MAX_BODY, database_down, json_error

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
bp.add_url_rule("/ses", "ses", ses.receive, methods=["POST"])
bp.add_url_rule("/sendgrid", "sendgrid", sendgrid.receive, methods=["POST"])
bp.add_url_rule("/postmark", "postmark", postmark.receive, methods=["POST"])
# the app's pages for these codes would otherwise answer first: a handler for a code comes before one for a class
for error, *_ in ERROR_PAGES:
    if isinstance(error, int):
        bp.register_error_handler(error, json_error)
bp.register_error_handler(HTTPException, json_error)
bp.register_error_handler(OperationalError, database_down)


@bp.url_value_preprocessor
def _allow_batches(_endpoint, _values) -> None:
    # runs before the app's before_request hooks, the first of which reads the body
    request.max_content_length = MAX_BODY
