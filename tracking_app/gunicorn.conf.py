"""gunicorn settings for the tracker; every value can be overridden on the command line."""

import multiprocessing
import os

bind = os.environ.get("TRACKER_BIND", "127.0.0.1:8000")
# gevent: a worker serves many requests at once, so the opens in flight in it share one database
# write and commit (tracking_app.group_commit) while each still answers only after its own is
# committed. The work is short and mostly waiting, so one worker per core keeps them busy.
worker_class = "gevent"
workers = int(os.environ.get("TRACKER_WORKERS", multiprocessing.cpu_count()))
worker_connections = 1000
timeout = 30
graceful_timeout = 20
keepalive = 5
# recycle workers now and then (leaks happen), but rarely: each restart reloads the app
max_requests = 200000
max_requests_jitter = 20000
accesslog = "-" if os.environ.get("TRACKER_ACCESS_LOG") else None
# the access log would hold tokens; they carry no address but are still bearer links


def post_fork(server, worker):
    """psycopg2 waits in C; this makes its waits yield to other requests, as gevent's sockets do."""
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()
