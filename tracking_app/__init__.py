"""The tracker recipients hit: opens, clicks, unsubscribes, preferences, feedback, surveys, the analytics API."""

from __future__ import annotations

from typing import Any

from flask import Flask, g, render_template
from sqlalchemy.exc import OperationalError

from tutormax.settings import Settings, get_settings, load_settings


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the tracker; config overrides Settings fields by name (tests pass a database URL)."""
    from db.session import session_factory
    from tracking_app import api, prefs, responses, track
    from tracking_app.classify import parse_networks
    from tracking_app.journal import Journal
    from tutormax.links import Links
    from tutormax.settings import var_dir

    settings: Settings = load_settings(**config) if config else get_settings()
    app = Flask(__name__)
    app.config.update(
        SETTINGS=settings,
        LINKS=Links(settings),
        TRUSTED_PROXIES=parse_networks(settings.tracker_trusted_proxies),
        APPLE_PROXY_NETWORKS=parse_networks(settings.apple_proxy_networks),
        JOURNAL=Journal(var_dir() / "journal"),
        SESSIONS=session_factory(settings.database_url, pre_ping=False),
        MAX_CONTENT_LENGTH=64 * 1024,  # forms here are small; anything bigger is not ours
    )
    for blueprint in (track.bp, prefs.bp, responses.bp, api.bp):
        app.register_blueprint(blueprint)

    @app.teardown_request
    def _close_session(_exc) -> None:
        session = g.pop("db", None)
        if session is not None:
            session.close()

    @app.errorhandler(404)
    def _not_found(_exc):
        return render_template("message.html", title="Link not found",
                               body="This link is not valid. It may have been mistyped or cut short."), 404

    @app.errorhandler(400)
    def _bad_request(_exc):
        return render_template("message.html", title="Bad request", body="That request could not be understood."), 400

    @app.errorhandler(403)
    def _forbidden(_exc):
        return render_template("message.html", title="Expired form",
                               body="This form could not be verified. Open the link from your email again."), 403

    @app.errorhandler(405)
    def _wrong_method(_exc):
        return render_template("message.html", title="Not allowed", body="That is not something this page does."), 405

    @app.errorhandler(413)
    def _too_large(_exc):
        return render_template("message.html", title="Too large", body="That request is too large."), 413

    @app.errorhandler(OperationalError)
    def _database_down(_exc):
        # opens and clicks are journaled; pages that must read the database ask the visitor to come back
        return render_template("message.html", title="Back in a moment",
                               body="We could not save that just now. Please try again in a few minutes."), 503

    @app.get("/help")
    def help_page():
        """Support and scheduling help: where every email's help, support and dashboard links land."""
        return render_template("help.html")

    @app.get("/healthz")
    def healthz():
        """Liveness for load balancers."""
        return {"ok": True}

    return app
