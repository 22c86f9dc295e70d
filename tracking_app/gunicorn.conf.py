"""gunicorn settings for the tracker; every value can be overridden on the command line."""

import multiprocessing
import os

bind = os.environ.get("TRACKER_BIND", "127.0.0.1:8000")
# sync workers: each request is short and its database write must finish before the answer
workers = int(os.environ.get("TRACKER_WORKERS", multiprocessing.cpu_count() * 2 + 1))
worker_class = "sync"
timeout = 30
graceful_timeout = 20
keepalive = 5
# recycle workers now and then (leaks happen), but rarely: each restart reloads the app
max_requests = 200000
max_requests_jitter = 20000
accesslog = "-" if os.environ.get("TRACKER_ACCESS_LOG") else None
# the access log would hold tokens; they carry no address but are still bearer links
