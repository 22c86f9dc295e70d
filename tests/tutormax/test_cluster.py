"""`tutormax cluster`: the command lines it runs, the processes it remembers, and a down that stops only those."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tutormax import cluster
from tutormax.settings import PROJECT_ROOT, ConfigError

# a stand-in worker: starts a "flow run" in a session of its own, as Prefect's process worker does,
# ignores the first SIGTERM (a real worker waits for its runs) and leaves its run behind when it exits
FAKE_WORKER = """
import signal, subprocess, sys, time
run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
print(run.pid, flush=True)
terms = []
def on_term(signum, frame):
    terms.append(signum)
    if len(terms) == 2:
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
while True:
    time.sleep(0.05)
"""
SLEEPER = "import time; time.sleep(600)"


def config(tmp_path: Path, **changes) -> cluster.ClusterConfig:
    """A cluster configuration rooted in the test's folder."""
    return cluster.ClusterConfig(root=tmp_path / "cluster", pool="tutormax-mail", database_url="sqlite://", **changes)


def gone(pid: int) -> bool:
    """No such process, or only its exit status left (a zombie has ended)."""
    return cluster.start_ticks(pid) is None


def wait_for(check, seconds: float = 10.0) -> bool:
    """Whether check came to hold within seconds."""
    give_up = time.monotonic() + seconds
    while not check():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def reaped():
    """Processes the test starts itself, killed at the end whatever happened."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_the_pool_is_the_one_prefect_yaml_names_and_two_names_are_refused(tmp_path):
    assert cluster.work_pool_name() == "tutormax-mail"
    two = tmp_path / "prefect.yaml"
    two.write_text(textwrap.dedent("""
        deployments:
          - {name: a, entrypoint: flows/a.py:a, work_pool: {name: tutormax-mail}}
          - {name: b, entrypoint: flows/b.py:b, work_pool: {name: elsewhere}}
    """))
    with pytest.raises(ConfigError, match="same work pool"):
        cluster.work_pool_name(two)


def test_command_lines(tmp_path):
    c = config(tmp_path, port=4301)
    python = [sys.executable, "-m", "prefect"]
    assert cluster.server_command(c) == [*python, "server", "start", "--host", "127.0.0.1", "--port", "4301"]
    assert cluster.work_pool_command(c) == [*python, "work-pool", "create", "tutormax-mail", "--type", "process"]
    assert cluster.deploy_command() == [*python, "--no-prompt", "deploy", "--all"]
    worker = cluster.worker_command(c, 2)
    assert worker[:9] == [*python, "worker", "start", "--pool", "tutormax-mail", "--type", "process"]
    assert worker[9] == "--name" and worker[10] == f"worker-2@{os.uname().nodename}"
    assert "--limit" not in worker
    assert cluster.worker_command(config(tmp_path, worker_limit=3), 1)[-2:] == ["--limit", "3"]
    assert cluster.tracker_command(config(tmp_path, tracker_bind="0.0.0.0:9000")) == [
        sys.executable, "-m", "tutormax.cli", "tracker", "--bind", "0.0.0.0:9000"]


def test_the_server_alone_gets_its_postgresql_database_and_everyone_gets_the_api_and_heartbeat(tmp_path):
    c = config(tmp_path, postgres_url="postgresql://ops:s3cret@db.internal:5433/postgres",
               prefect_database="prefect_prod", port=4301, heartbeat_seconds=45, crash_after_seconds=150)
    shell = {"PATH": "/usr/bin", "PREFECT_API_URL": "http://elsewhere:4200/api",
             "PREFECT_API_DATABASE_CONNECTION_URL": "postgresql+asyncpg://someone@else/db"}
    server = cluster.server_env(c, shell)
    assert server["PREFECT_API_DATABASE_CONNECTION_URL"] == (
        "postgresql+asyncpg://ops:s3cret@db.internal:5433/prefect_prod")
    worker = cluster.base_env(c, shell)
    assert "PREFECT_API_DATABASE_CONNECTION_URL" not in worker  # the password stays with the server
    for env in (server, worker):
        assert env["PREFECT_API_URL"] == "http://127.0.0.1:4301/api"  # this shell's own is overridden
        assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "45"
        assert env["DATABASE_URL"] == "sqlite://"
        assert env["TUTORMAX_HOME"] == str(PROJECT_ROOT)
        assert env["PATH"] == "/usr/bin"
    assert str(c.prefect_database_url()).startswith("postgresql+asyncpg://ops:***@")  # printable form hides it


def test_configuration_from_the_environment_and_what_it_refuses(tmp_path, monkeypatch):
    monkeypatch.setenv("TUTORMAX_VAR_DIR", str(tmp_path))
    env = {"CLUSTER_WORKERS": "3", "CLUSTER_PREFECT_DATABASE": "prefect_ops", "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "60",
           "CLUSTER_CRASH_AFTER_SECONDS": "200", "TRACKER_BIND": "127.0.0.1:8100"}
    c = cluster.ClusterConfig.from_env(env, port=4302, workers=None)
    assert (c.workers, c.prefect_database, c.heartbeat_seconds, c.crash_after_seconds, c.port) == (
        3, "prefect_ops", 60, 200, 4302)
    assert c.root == tmp_path / "cluster" and c.tracker_bind == "127.0.0.1:8100" and c.pool == "tutormax-mail"
    with pytest.raises(ConfigError, match="at least 30"):
        config(tmp_path, heartbeat_seconds=10)
    with pytest.raises(ConfigError, match="longer than the heartbeat"):
        config(tmp_path, heartbeat_seconds=60, crash_after_seconds=60)
    with pytest.raises(ConfigError, match="CLUSTER_PREFECT_DATABASE"):
        config(tmp_path, prefect_database='x"; DROP DATABASE y; --')
    with pytest.raises(ConfigError, match="postgresql://"):
        config(tmp_path, postgres_url="sqlite:///prefect.db")
    with pytest.raises(ConfigError, match="CLUSTER_WORKERS="):
        cluster.ClusterConfig.from_env({"CLUSTER_WORKERS": "two"})


def test_the_crash_automation_waits_for_heartbeats_and_marks_silent_runs_crashed(tmp_path):
    automation = cluster.crash_automation(config(tmp_path, heartbeat_seconds=30, crash_after_seconds=90))
    trigger = automation.trigger
    assert trigger.posture == "Proactive"
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
            "prefect.flow-run.Crashed", "prefect.flow-run.Cancelled"} == trigger.expect
    assert trigger.for_each == {"prefect.resource.id"} and trigger.within == timedelta(seconds=90)
    (action,) = automation.actions
    assert action.type == "change-flow-run-state" and action.state == "CRASHED"


def test_the_registry_remembers_each_start_and_a_reused_pid_is_not_ours(tmp_path, reaped):
    registry = cluster.Registry(tmp_path)
    assert registry.load() == []
    first = cluster.launch("worker-1", "worker", [sys.executable, "-c", SLEEPER], os.environ, tmp_path / "w1.log")
    registry.add(first)
    stranger = subprocess.Popen([sys.executable, "-c", SLEEPER])
    reaped.append(stranger)
    # what the registry would say had `up` started a process with the stranger's pid, long ago
    reused = cluster.Launched("worker-2", "worker", stranger.pid, cluster.start_ticks(stranger.pid) - 1)
    registry.add(reused)
    assert registry.load() == [first, reused]
    assert first.alive() and not reused.alive() and not reused.running()
    assert cluster.stop(reused) is False
    assert stranger.poll() is None
    assert cluster.stop(first, steps=[(signal.SIGTERM, 5.0)]) is True
    assert wait_for(lambda: gone(first.pid))


def test_down_stops_exactly_what_up_started_workers_needing_two_signals_and_their_runs(tmp_path, reaped):
    c = config(tmp_path)
    registry = cluster.Registry(c.root)
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    workers = [cluster.launch(f"worker-{n}", "worker", [sys.executable, str(script)], os.environ,
                              c.root / f"worker-{n}.log") for n in (1, 2)]
    server = cluster.launch("prefect-server", "server", [sys.executable, "-c", SLEEPER], os.environ,
                            c.root / "server.log")
    for process in (server, *workers):
        registry.add(process)
    assert wait_for(lambda: all(Path(w.log).read_text().strip() for w in workers))
    runs = [int(Path(w.log).read_text().split()[0]) for w in workers]
    assert all(cluster.start_ticks(run) for run in runs)
    bystander = subprocess.Popen([sys.executable, "-c", SLEEPER], start_new_session=True)
    reaped.append(bystander)

    said: list[str] = []
    stopped = cluster.down(c, said.append)

    assert set(stopped) == {"worker-1", "worker-2", "prefect-server",
                            *(f"worker-{n} run {r}" for n, r in zip((1, 2), runs))}
    for pid in (server.pid, *(w.pid for w in workers), *runs):
        assert wait_for(lambda: gone(pid)), f"pid {pid} still runs"
    assert bystander.poll() is None  # not ours: untouched
    assert said[0].startswith("stopped worker-1") and said[-1].startswith("stopped prefect-server")
    assert registry.load() == []
    assert cluster.down(c, said.append) == [] and said[-1] == "nothing to stop: no cluster was started here"


def test_status_says_what_runs_and_what_does_not_answer(tmp_path):
    c = config(tmp_path, port=4303)
    assert cluster.status_lines(c, [], False, False, None)[0].startswith("the cluster is down")
    gone_worker = cluster.Launched("worker-1", "worker", 2 ** 22 + 1, 1, log="w.log")  # no such pid
    lines = cluster.status_lines(c, [gone_worker], True, False, 1)
    assert lines[0].split()[:4] == ["worker-1", "pid", str(2 ** 22 + 1), "GONE"]
    assert lines[1] == "Prefect API http://127.0.0.1:4303/api: healthy; UI http://127.0.0.1:4303"
    assert lines[2] == "work pool tutormax-mail: 1 worker(s) online"
    assert lines[3] == "tracker http://127.0.0.1:8000: NOT ANSWERING"
