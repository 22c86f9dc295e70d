"""The tracker recipients hit: opens, clicks, unsubscribes, preferences, feedback, surveys, the analytics API."""

from __future__ import annotations

from typing import Any

from flask import Flask, abort, g, jsonify, render_template, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from tutormax.settings import Settings, get_settings, load_settings

# every error a visitor can meet, as a page in words; opens and clicks are journaled when the
# database is down, so only pages that must read it ask the visitor to come back
ERROR_PAGES = (
    (400, 400, "Bad request", "That request could not be understood."),
    (403, 403, "Expired form", "This form could not be verified. Open the link from your email again."),
    (404, 404, "Link not found", "This link is not valid. It may have been mistyped or cut short."),
    (405, 405, "Not allowed", "That is not something this page does."),
    (413, 413, "Too large", "That request is too large."),
    (OperationalError, 503, "Back in a moment", "We could not save that just now. Please try again in a few minutes."),
)


def _page(status: int, title: str, body: str):
    def handler(_exc):
        if request.path.startswith("/api/"):  # API clients get JSON, on paths the API does not know too
            return jsonify(error=HTTP_STATUS_CODES[status].lower().replace(" ", "_")), status
        return render_template("message.html", title=title, body=body), status

    return handler


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the tracker; config overrides Settings fields by name (tests pass a database URL)."""
    from db import tracking
    from db.session import session_factory
    from tracking_app import api, prefs, responses, track, webhooks
    from tracking_app.classify import parse_networks
    from tracking_app.group_commit import GroupCommit
    from tutormax.journal import Journal
    from tracking_app.pixel import OpenPixel
    from tutormax.links import Links
    from tutormax.settings import var_dir

    settings: Settings = load_settings(**config) if config else get_settings()
    sessions = session_factory(settings.database_url, pre_ping=False)
    app = Flask(__name__)
    # a tracker URL is ours, never typed: "/c//x" is a bad link (404), not one to redirect to "/c/x"
    app.url_map.merge_slashes = False
    app.config.update(
        SETTINGS=settings,
        LINKS=Links(settings),
        TRUSTED_PROXIES=parse_networks(settings.tracker_trusted_proxies),
        APPLE_PROXY_NETWORKS=parse_networks(settings.apple_proxy_networks),
        JOURNAL=Journal(var_dir() / "journal"),
        SESSIONS=sessions,
        # opens in flight together share one write and one commit; each still answers after its own
        OPENS=GroupCommit(tracking.OpenRecorder(sessions.kw["bind"])),
        MAX_CONTENT_LENGTH=64 * 1024,  # forms here are small; anything bigger is not ours
    )
    for blueprint in (track.bp, prefs.bp, responses.bp, api.bp, webhooks.bp):
        app.register_blueprint(blueprint)
    app.wsgi_app = OpenPixel(app, app.wsgi_app)  # type: ignore[method-assign]

    @app.before_request
    def _read_body() -> None:
        # the body is read and parsed once, here, and kept for the views: a body that cannot be read
        # (chunked framing the server refuses, a client gone midway) or parsed (JSON nested deeper
        # than the parser recurses) is the client's fault, a 400, whichever route it was sent to
        try:
            request.get_data(cache=True, parse_form_data=False)
            request.get_json(silent=True)  # silent: invalid JSON is None, for the view to refuse
        except HTTPException:
            raise  # too large (413) or already a client error
        except Exception:  # what a server raises from a request body it cannot read varies
            abort(400)

    @app.before_request
    def _refuse_nul() -> None:
        # no database stores a NUL in text (PostgreSQL refuses it): input holding one is garbage,
        # turned away here rather than failing a query in whichever view meets it first
        if "\x00" in request.path:
            abort(404)
        fields = [*request.args.items(multi=True)]
        if request.method == "POST" and request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            fields += request.form.items(multi=True)
        if any("\x00" in key or "\x00" in value for key, value in fields):
            abort(400)

    @app.teardown_request
    def _close_session(_exc) -> None:
        session = g.pop("db", None)
        if session is not None:
            session.close()

    for error, status, title, body in ERROR_PAGES:
        app.register_error_handler(error, _page(status, title, body))

    @app.get("/help")
    def help_page():
        """Support and scheduling help: where every email's help, support and dashboard links land."""
        return render_template("help.html")

    @app.get("/healthz")
    def healthz():
        """Liveness for load balancers."""
        return {"ok": True}

    return app
