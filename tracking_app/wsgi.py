"""The WSGI entry point for gunicorn: `gunicorn tracking_app.wsgi:app` (see gunicorn.conf.py)."""

from tracking_app.app import create_app

app = create_app()
