"""`make demo`: its tracker serves TRACKING_BASE_URL, a taken port stops it before any work, it waits for Prefect."""

from __future__ import annotations

import http.server
import os
import socket
import threading
import urllib.request

import pytest

from tutormax import demo
from tutormax.settings import get_settings, var_dir


def test_the_demo_waits_long_enough_for_prefects_first_start():
    # Prefect's own temporary server gave up after 20 s on a busy 2-core machine
    assert demo.PREFECT_STARTUP_SECONDS >= 120


def test_a_taken_tracker_port_stops_the_demo_before_it_changes_anything(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("TUTORMAX_VAR_DIR", str(tmp_path / "var"))
    smtp_port = os.environ.get("SMTP_PORT")
    state = var_dir()
    (state / "tutormax.db").write_text("last demo's data")
    (state / "maildir").mkdir(exist_ok=True)
    (state / "maildir" / "kept").write_text("last demo's mail")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("TRACKING_BASE_URL", f"http://127.0.0.1:{port}")
        with pytest.raises(SystemExit) as stop:
            demo.run_demo(sessions=100, prefect_home=tmp_path / "prefect")
    message = str(stop.value.code)
    assert f"port {port}" in message and f"TRACKING_BASE_URL=http://127.0.0.1:{port}" in message
    assert f"TRACKING_BASE_URL=http://127.0.0.1:{port + 1} make demo" in message  # how to pick another
    assert (state / "tutormax.db").read_text() == "last demo's data"
    assert (state / "maildir" / "kept").read_text() == "last demo's mail"
    assert not (tmp_path / "prefect").exists()  # no Prefect server was started either
    assert os.environ.get("SMTP_PORT") == smtp_port  # nor the environment changed


def test_the_tracker_listens_where_the_links_point(monkeypatch, tmp_path):
    base = f"http://127.0.0.1:{demo.free_port()}"
    monkeypatch.setenv("TRACKING_BASE_URL", base)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'tracker.db'}")
    get_settings.cache_clear()
    bind = demo.tracker_bind(get_settings().tracking_base_url)
    get_settings.cache_clear()
    assert bind == base.removeprefix("http://")
    tracker = demo._start_tracker(bind, base)
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
            assert response.status == 200
    finally:
        tracker.terminate()
        tracker.wait(timeout=30)


def test_the_tracker_must_be_plain_http():
    with pytest.raises(SystemExit) as stop:
        demo.tracker_bind("https://track.tutormax.example")
    assert "TRACKING_BASE_URL=https://track.tutormax.example" in str(stop.value.code)


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_configured_prefect_server_that_answers_is_used(monkeypatch, tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{server.server_address[1]}/api"
    monkeypatch.setenv("PREFECT_API_URL", api)
    try:
        with demo.prefect_api(tmp_path / "prefect", tmp_path / "server.log") as (ready, browse):
            ready()
    finally:
        server.shutdown()
        server.server_close()
    assert browse == f"open http://127.0.0.1:{server.server_address[1]}"
    assert not (tmp_path / "server.log").exists()  # no server of its own
