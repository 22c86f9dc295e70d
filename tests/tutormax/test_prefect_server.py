"""The local Prefect server: waited for past a slow start, a clear error if it dies or stays silent, nothing left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from tutormax.demo import free_port
from tutormax.prefect_server import PrefectServer, PrefectServerError, healthy, start

# serves /api/health after a pause, as the real server does once its migrations are done
SLOW_SERVER = """
import http.server, sys, time
time.sleep(float(sys.argv[2]))

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b"true")

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""
DYING_SERVER = """
import sys
print("sqlite3.OperationalError: unable to open database file", file=sys.stderr)
sys.exit(3)
"""
# never answers and has started a child of its own; with "stubborn" it ignores the polite signal too
SILENT_SERVER = """
import signal, subprocess, sys, time
if sys.argv[1:] == ["stubborn"]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(f"child {child.pid}", flush=True)
time.sleep(600)
"""


def fake(tmp_path: Path, source: str, *args: object) -> list[str]:
    script = tmp_path / "fake_server.py"
    script.write_text(source)
    return [sys.executable, str(script), *map(str, args)]


def gone(pid: int) -> bool:
    """No such process, or only its unreaped exit status (a zombie has ended)."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def wait_gone(pid: int) -> bool:
    for _ in range(50):
        if gone(pid):
            return True
        time.sleep(0.1)
    return False


def test_waits_past_a_slow_start_and_stops_the_server(tmp_path):
    port = free_port()
    began = time.monotonic()
    server = start(port, home=tmp_path / "home", log=tmp_path / "server.log", deadline=30,
                   command=fake(tmp_path, SLOW_SERVER, port, 1.5))
    assert time.monotonic() - began >= 1.5
    assert server.api_url == f"http://127.0.0.1:{port}/api" and healthy(server.api_url)
    server.stop()
    assert server.process.returncode is not None and wait_gone(server.process.pid)
    assert not healthy(server.api_url)


def test_a_server_that_dies_is_an_error_with_its_log(tmp_path):
    log = tmp_path / "server.log"
    with pytest.raises(PrefectServerError) as error:
        start(free_port(), home=tmp_path / "home", log=log, deadline=30, command=fake(tmp_path, DYING_SERVER))
    message = str(error.value)
    assert "exited (code 3)" in message and str(log) in message
    assert "unable to open database file" in message  # the tail of its log


def test_a_silent_server_is_stopped_at_the_deadline_with_everything_it_started(tmp_path):
    log = tmp_path / "server.log"
    began = time.monotonic()
    with pytest.raises(PrefectServerError) as error:
        start(free_port(), home=tmp_path / "home", log=log, deadline=2, command=fake(tmp_path, SILENT_SERVER))
    message = str(error.value)
    assert "within 2 s" in message and str(log) in message and "child " in message
    child = int(log.read_text().split("child ")[1].split()[0])
    assert wait_gone(child)  # the whole process group was stopped
    assert time.monotonic() - began < 2 + 10


def test_a_server_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    log = tmp_path / "server.log"
    server = PrefectServer.launch(free_port(), home=tmp_path / "home", log=log,
                                  command=fake(tmp_path, SILENT_SERVER, "stubborn"))
    while "child " not in log.read_text():  # its SIGTERM handler is in place
        time.sleep(0.05)
    began = time.monotonic()
    server.stop(grace=1)
    assert 1 <= time.monotonic() - began < 10
    assert server.process.returncode == -signal.SIGKILL
    assert wait_gone(int(log.read_text().split("child ")[1].split()[0]))


FLOW = """
from prefect import flow
from prefect.runtime import flow_run

@flow(name="history-check")
def history_check() -> str:
    return flow_run.id

print(history_check())
"""


def flow_runs(api_url: str, run_id: str) -> list[dict]:
    query = json.dumps({"flow_runs": {"id": {"any_": [run_id]}}}).encode()
    request = urllib.request.Request(f"{api_url}/flow_runs/filter", data=query,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_a_real_server_keeps_its_runs_across_restarts(tmp_path):
    home, log = tmp_path / "prefect", tmp_path / "server.log"
    server = start(free_port(), home=home, log=log, deadline=120)
    try:
        # the UI asks this server, not port 4200
        with urllib.request.urlopen(f"{server.api_url.removesuffix('/api')}/ui-settings", timeout=10) as response:
            assert json.load(response)["api_url"] == server.api_url
        # a subprocess: the suite's own Prefect harness stays undisturbed
        env = {**os.environ, "PREFECT_API_URL": server.api_url, "PREFECT_HOME": str(home)}
        run = subprocess.run([sys.executable, "-c", textwrap.dedent(FLOW)], env=env, capture_output=True, text=True,
                             timeout=60)
        assert run.returncode == 0, run.stderr
        run_id = run.stdout.strip().splitlines()[-1]
    finally:
        server.stop()
    assert wait_gone(server.process.pid)
    assert (home / "prefect.db").is_file()

    again = start(free_port(), home=home, log=log, deadline=120)
    try:
        found = flow_runs(again.api_url, run_id)
    finally:
        again.stop()
    assert [(r["id"], r["state_type"]) for r in found] == [(run_id, "COMPLETED")]
