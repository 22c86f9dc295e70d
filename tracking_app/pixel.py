"""The open pixel, answered in front of Flask: the route every opened email hits, kept lean.

Flask's per-request work (request and app contexts, URL matching, a Response object) cost
more worker CPU than recording the open itself: under load a pixel hit took 348 us of worker
CPU through Flask and about 200 us here (README, "The tracker"). Everything else, including
a pixel URL asked for with another method, goes on to the Flask app.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy.exc import OperationalError

from db.events import EventType
from tracking_app.classify import BEFORE_TOO_SOON, Verdict, classify_open, parse_client
from tracking_app.group_commit import BatchFailed, WriteAborted
from tracking_app.recording import clean_user_agent, event_row, journal, new_event_key, now, peer_or_forwarded
from tutormax.tokens import BadToken, Purpose

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0", "Pragma": "no-cache", "Expires": "0"}
PIXEL_HEADERS = [("Content-Type", "image/gif"), ("Content-Length", str(len(GIF))), *NO_STORE.items()]
MIN_HUMAN_SECONDS = 2.0

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class OpenPixel:
    """WSGI middleware: GET and HEAD /o/<token>.gif answered here, every other request passed on."""

    def __init__(self, app: Flask, next_app: WSGIApp) -> None:
        self._app = app  # its config is read per request: tests and operators may change it
        self._next = next_app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The open pixel: always a 1x1 GIF, never cached; records an open for a genuine token."""
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD")
        if not (path.startswith("/o/") and path.endswith(".gif") and method in ("GET", "HEAD")):
            return self._next(environ, start_response)
        try:
            data = self._app.config["LINKS"].signer.verify(Purpose.OPEN, path[3:-4])
        except BadToken:
            pass
        else:
            self._record(data.message_id, environ)
        start_response("200 OK", PIXEL_HEADERS)
        return [] if method == "HEAD" else [GIF]

    def _record(self, message_id: int, environ: dict[str, Any]) -> None:
        config = self._app.config
        at = now()
        ip = peer_or_forwarded(environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"),
                               config["TRUSTED_PROXIES"])
        user_agent = clean_user_agent(environ.get("HTTP_USER_AGENT"))
        # the rules that do not need the message are settled here; "too soon after sending" is
        # applied with the write, where sent_at is at hand (db.tracking.OpenRecorder)
        early = classify_open(user_agent=user_agent, ip=ip, sent_at=None, at=at,
                              apple_proxy_networks=config["APPLE_PROXY_NETWORKS"],
                              method=environ.get("REQUEST_METHOD", "GET"))
        strong = early.reason in BEFORE_TOO_SOON["opened"]
        client = parse_client(user_agent)
        key = new_event_key()
        try:
            config["OPENS"].submit({
                "mid": message_id, "at": at, "soon": at - timedelta(seconds=MIN_HUMAN_SECONDS), "ua": user_agent,
                "ip": ip, "first_reason": early.reason if strong else None,
                "late_reason": None if strong else early.reason,
                "device": client.device, "browser": client.browser[:80], "os": client.os[:80], "key": key})
        except BatchFailed as failed:
            if not isinstance(failed, WriteAborted) and not isinstance(failed.__cause__, OperationalError):
                # this open itself cannot be stored (the rest of its batch was); the pixel still answers
                self._app.logger.error("open not recorded: %s", type(failed.__cause__).__name__)
                return
            # the database is unreachable, or the write was cut off and may have committed: the
            # journal keeps the open under its key, and the ingest skips it if it is already stored
            self._journal(message_id, early, at, user_agent, ip, key)
        except BaseException as stop:
            if isinstance(stop, Exception):
                raise  # a bug, not a stop: let it surface
            # this request is being stopped (the worker is shutting down) while its open was being
            # written or waited to be: keep it, as above, and let the stop go on
            self._journal(message_id, early, at, user_agent, ip, key)
            raise

    def _journal(self, message_id: int, early: Verdict, at: datetime, user_agent: str | None, ip: str | None,
                 key: str) -> None:
        with self._app.app_context():
            journal(event_row(message_id, EventType.OPENED, early, at=at, user_agent=user_agent, ip=ip,
                              event_key=key))
