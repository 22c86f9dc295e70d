"""`tutormax cluster up|down|status`: a Prefect server on PostgreSQL, the work pool, its workers and the tracker.

What production runs on several hosts, brought up on one machine: a Prefect server whose
database is a PostgreSQL database of its own (never the application's), the process work pool
prefect.yaml names, every deployment in prefect.yaml (`prefect deploy --all`), the automation
that marks a run Crashed when its heartbeats stop, N `prefect worker start` processes and the
tracker under gunicorn. Each process runs in a session of its own with its log under
var/cluster/; what was started is written to var/cluster/processes.json with each process's
start time, so `down` stops exactly those processes (and the flow runs their workers started),
never a later process that happens to reuse a pid.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import URL, make_url

from tutormax.prefect_server import healthy
from tutormax.settings import PROJECT_ROOT, ConfigError, var_dir

PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"
REGISTRY = "processes.json"
AUTOMATION_NAME = "tutormax: crashed when heartbeats stop"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
# Prefect refuses a flow-run heartbeat more often than every 30 s
MIN_HEARTBEAT = 30

# (signal, seconds to wait for the group to end) in turn; a worker ignores its first SIGTERM for
# as long as its runs take (40 s and more), and stops on a second
STOP_STEPS: dict[str, tuple[tuple[int, float], ...]] = {
    "worker": ((signal.SIGTERM, 3.0), (signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)),
    "flow-run": ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)),
    "tracker": ((signal.SIGTERM, 25.0), (signal.SIGKILL, 5.0)),  # gunicorn's graceful_timeout is 20 s
    "server": ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)),
}
# workers first, so nothing new starts; the server last, so the runs can still report
STOP_ORDER = ("worker", "tracker", "server")


class ClusterError(RuntimeError):
    """A step of `up` failed; what was started is stopped again and the message says where to look."""


# --- configuration ------------------------------------------------------------------------------


def _int_env(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    """A whole number from the environment, or default when unset; ConfigError naming the variable."""
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a whole number") from None


def work_pool_name(prefect_yaml: Path = PREFECT_YAML) -> str:
    """The one work pool every deployment in prefect.yaml names (two different ones is an error)."""
    deployments = yaml.safe_load(prefect_yaml.read_text())["deployments"]
    names = {(entry.get("work_pool") or {}).get("name") for entry in deployments}
    if len(names) != 1 or None in names:
        raise ConfigError(f"{prefect_yaml.name}: every deployment must name the same work pool, "
                          f"found {sorted(map(str, names))}")
    return names.pop()


@dataclass(frozen=True)
class ClusterConfig:
    """Where and how many: read from the environment (CLUSTER_*), overridden by `tutormax cluster up` options."""

    root: Path
    pool: str
    database_url: str  # the application's (DATABASE_URL); the Prefect server never touches it
    postgres_url: str = DEFAULT_POSTGRES  # where the Prefect server's own database is created
    prefect_database: str = "tutormax_prefect"
    host: str = "127.0.0.1"
    port: int = 4200
    workers: int = 2
    worker_limit: int | None = None  # flow runs one worker runs at once (None: no limit)
    heartbeat_seconds: int = 30
    crash_after_seconds: int = 90  # a run silent this long after a heartbeat is marked Crashed
    tracker_bind: str = "127.0.0.1:8000"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.prefect_database):
            raise ConfigError(f"CLUSTER_PREFECT_DATABASE={self.prefect_database!r}: use lower-case letters, digits "
                              "and underscores (a PostgreSQL name that needs no quoting)")
        if self.workers < 1:
            raise ConfigError("CLUSTER_WORKERS must be at least 1")
        if self.worker_limit is not None and self.worker_limit < 1:
            raise ConfigError("CLUSTER_WORKER_LIMIT must be at least 1 (or unset: no limit)")
        if self.heartbeat_seconds < MIN_HEARTBEAT:
            raise ConfigError(f"PREFECT_FLOWS_HEARTBEAT_FREQUENCY must be at least {MIN_HEARTBEAT} s (Prefect's floor)")
        if self.crash_after_seconds <= self.heartbeat_seconds:
            raise ConfigError("CLUSTER_CRASH_AFTER_SECONDS must be longer than the heartbeat, or every run is "
                              "marked Crashed between two heartbeats")
        if make_url(self.postgres_url).get_backend_name() != "postgresql":
            raise ConfigError("CLUSTER_POSTGRES_URL must be a postgresql:// URL: the Prefect server of a cluster "
                              "runs on PostgreSQL")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ClusterConfig:
        """The configuration from the environment, then any option given (None: not given)."""
        from tutormax.settings import get_settings

        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "root": var_dir() / "cluster",
            "pool": work_pool_name(),
            "database_url": get_settings().database_url,
            "postgres_url": env.get("CLUSTER_POSTGRES_URL") or DEFAULT_POSTGRES,
            "prefect_database": env.get("CLUSTER_PREFECT_DATABASE") or "tutormax_prefect",
            "host": env.get("CLUSTER_HOST") or "127.0.0.1",
            "port": _int_env(env, "CLUSTER_PREFECT_PORT", 4200),
            "workers": _int_env(env, "CLUSTER_WORKERS", 2),
            "worker_limit": _int_env(env, "CLUSTER_WORKER_LIMIT", None),
            "heartbeat_seconds": _int_env(env, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY", 30),
            "crash_after_seconds": _int_env(env, "CLUSTER_CRASH_AFTER_SECONDS", 90),
            "tracker_bind": env.get("TRACKER_BIND") or "127.0.0.1:8000",
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def api_url(self) -> str:
        """The Prefect API, as PREFECT_API_URL names it."""
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        """The Prefect UI."""
        return f"http://{self.host}:{self.port}"

    @property
    def prefect_home(self) -> Path:
        """The cluster processes' Prefect home (client state and logs; the server's data is in PostgreSQL)."""
        return self.root / "prefect"

    def prefect_database_url(self) -> URL:
        """The Prefect server's own database, through asyncpg (which Prefect ships)."""
        return make_url(self.postgres_url).set(drivername="postgresql+asyncpg", database=self.prefect_database)


# --- command lines and environments -------------------------------------------------------------


def prefect_command(*args: str) -> list[str]:
    """`prefect ...` with the Python running this program."""
    return [sys.executable, "-m", "prefect", *args]


def server_command(config: ClusterConfig) -> list[str]:
    """The Prefect server on the cluster's address (its database comes from server_env)."""
    return prefect_command("server", "start", "--host", config.host, "--port", str(config.port))


def work_pool_command(config: ClusterConfig) -> list[str]:
    """The process work pool prefect.yaml names."""
    return prefect_command("work-pool", "create", config.pool, "--type", "process")


def deploy_command() -> list[str]:
    """Every deployment in prefect.yaml (run from the project's root); no prompt, nothing built or pushed."""
    return prefect_command("--no-prompt", "deploy", "--all")


def worker_command(config: ClusterConfig, number: int) -> list[str]:
    """One worker on the pool, named for its number and host, taking at most worker_limit runs at once."""
    command = prefect_command("worker", "start", "--pool", config.pool, "--type", "process",
                              "--name", f"{worker_name(number)}@{os.uname().nodename}")
    if config.worker_limit:
        command += ["--limit", str(config.worker_limit)]
    return command


def tracker_command(config: ClusterConfig) -> list[str]:
    """The tracker under gunicorn (TRACKER_WORKERS sets its worker count)."""
    return [sys.executable, "-m", "tutormax.cli", "tracker", "--bind", config.tracker_bind]


def worker_name(number: int) -> str:
    """worker-1, worker-2...: its log's name and, with the host, its name in Prefect."""
    return f"worker-{number}"


def base_env(config: ClusterConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What every cluster process sees: this shell's environment, pointed at the cluster's Prefect server."""
    env = dict(os.environ if environ is None else environ)
    env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)  # the server's alone: it may hold a password
    env.update({
        "PREFECT_API_URL": config.api_url,  # before the server starts too: its UI calls this address
        "PREFECT_HOME": str(config.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "TUTORMAX_HOME": str(PROJECT_ROOT),  # prefect.yaml's pull step
        "DATABASE_URL": config.database_url,
        # a run that stops beating is marked Crashed by the automation `up` creates
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(config.heartbeat_seconds),
    })
    return env


def server_env(config: ClusterConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """base_env and the server's own database (the only process that gets its URL)."""
    env = base_env(config, environ)
    env["PREFECT_API_DATABASE_CONNECTION_URL"] = config.prefect_database_url().render_as_string(hide_password=False)
    return env


def crash_automation(config: ClusterConfig) -> Any:
    """The proactive automation: a flow run with no heartbeat, nor a final state, within crash_after_seconds is Crashed.

    Prefect 3.9's server has no service that notices a run whose process died: without this, such a
    run stays Running for ever and keeps its deployment's concurrency slot.
    """
    from datetime import timedelta

    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return AutomationCore(
        name=AUTOMATION_NAME,
        description=(f"Marks a flow run Crashed when {config.crash_after_seconds} s pass after a heartbeat with "
                     f"neither another heartbeat nor a final state (workers beat every {config.heartbeat_seconds} s: "
                     "PREFECT_FLOWS_HEARTBEAT_FREQUENCY). Created by `tutormax cluster`."),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=config.crash_after_seconds),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"No heartbeat for {config.crash_after_seconds} s: its process died")],
    )


# --- processes: start, remember, recognise, stop ------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from the state field on (the name may hold spaces and parentheses); None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks after boot), or None if it is gone or has exited (a zombie)."""
    fields = _stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22 of proc(5)


@dataclass(frozen=True)
class Launched:
    """A process `up` started: its pid is its process group's and session's id (it leads both)."""

    name: str
    role: str  # worker | tracker | server | flow-run
    pid: int
    started: int  # start_ticks at launch: a later process reusing the pid is not this one
    command: list[str] = field(default_factory=list)
    log: str = ""

    def alive(self) -> bool:
        """Whether this very process (not a later one with its pid) still runs."""
        return start_ticks(self.pid) == self.started

    def group_members(self) -> list[int]:
        """Live processes still in this one's session, started no earlier than it (its leader may be gone)."""
        members = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            fields = _stat(int(entry.name))
            # fields[3]: session id (field 6 of proc(5))
            if (fields and fields[0] not in ("Z", "X") and int(fields[3]) == self.pid
                    and int(fields[19]) >= self.started):
                members.append(int(entry.name))
        return members

    def running(self) -> bool:
        """Whether anything of it runs: the leader, or what is left of its session."""
        return self.alive() or bool(self.group_members())


def descendants(pid: int) -> list[int]:
    """Every live process below pid, children first (a worker's flow runs sit in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and fields[0] not in ("Z", "X"):
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop(0)
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def launch(name: str, role: str, command: Sequence[str], env: Mapping[str, str], log: Path,
           cwd: Path = PROJECT_ROOT) -> Launched:
    """Start command in a session of its own, its output appended to log; how to recognise it later."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(list(command), env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    started = start_ticks(process.pid)
    if started is None:  # it died at once; its log says why
        process.wait()
        raise ClusterError(f"{name} exited at once (code {process.returncode}); see {log}")
    return Launched(name, role, process.pid, started, list(command), str(log))


class Registry:
    """var/cluster/processes.json: what `up` started, written after each start so a failed `up` can be undone."""

    def __init__(self, root: Path) -> None:
        self.path = root / REGISTRY

    def load(self) -> list[Launched]:
        """What was started, in order (nothing if no cluster was started here)."""
        try:
            rows = json.loads(self.path.read_text())["processes"]
        except FileNotFoundError:
            return []
        return [Launched(**row) for row in rows]

    def save(self, processes: Iterable[Launched]) -> None:
        """Write the list whole, atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"processes": [asdict(p) for p in processes]}, indent=1))
        temporary.replace(self.path)  # never half a file, even if `up` is killed

    def add(self, process: Launched) -> None:
        """Record one more start."""
        self.save([*self.load(), process])

    def clear(self) -> None:
        """Forget everything: it has been stopped."""
        self.path.unlink(missing_ok=True)


def _signal_group(process: Launched, sig: int) -> None:
    """Signal the process's group, and the stragglers of its session once its leader is gone."""
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    if not process.alive():
        # the leader is gone: its session's stragglers, one by one (the pid may be a stranger's by now)
        for pid in process.group_members():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def stop(process: Launched, steps: Sequence[tuple[int, float]] | None = None,
         sleep: Callable[[float], None] = time.sleep) -> bool:
    """Signal the process's group step by step until nothing of it runs; whether it had been running."""
    if not process.running():
        return False
    for sig, grace in steps or STOP_STEPS[process.role]:
        _signal_group(process, sig)
        waited = 0.0
        while process.running() and waited < grace:
            sleep(0.1)
            waited += 0.1
        if not process.running():
            break
    return True


def flow_runs_of(worker: Launched) -> list[Launched]:
    """The flow-run processes a worker started (each leads a session of its own)."""
    runs = []
    for pid in descendants(worker.pid):
        fields = _stat(pid)
        started = start_ticks(pid)
        if fields and started is not None and int(fields[3]) == pid:
            runs.append(Launched(f"{worker.name} run {pid}", "flow-run", pid, started))
    return runs


def stop_all(processes: Sequence[Launched], say: Callable[[str], None] = print,
             sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Stop what was started, workers (and their flow runs) first and the server last; the names stopped."""
    stopped = []
    for role in STOP_ORDER:
        for process in (p for p in processes if p.role == role):
            runs = flow_runs_of(process) if role == "worker" and process.alive() else []
            if stop(process, sleep=sleep):
                stopped.append(process.name)
                say(f"stopped {process.name} (pid {process.pid})")
            for run in runs:  # whatever the worker did not take down with it
                if stop(run, sleep=sleep):
                    stopped.append(run.name)
                    say(f"stopped a flow run of {process.name} (pid {run.pid}): its claims return after the lease")
    return stopped


# --- the steps of `up` --------------------------------------------------------------------------


def ensure_database(postgres_url: str, name: str) -> bool:
    """Create the Prefect server's database unless it exists; whether it was created."""
    from sqlalchemy import create_engine, text

    from sqlalchemy.exc import SQLAlchemyError

    url = make_url(postgres_url).set(drivername="postgresql+psycopg2")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}):
                return False
            conn.execute(text(f'CREATE DATABASE "{name}"'))  # the name was checked: letters, digits, _
            return True
    except SQLAlchemyError as exc:  # its text would hold the URL: name the server, never the password
        raise ClusterError(f"cannot create the Prefect database {name!r} on {url.render_as_string(hide_password=True)} "
                           f"(CLUSTER_POSTGRES_URL): {type(exc).__name__}") from None
    finally:
        engine.dispose()


def run_step(what: str, command: Sequence[str], env: Mapping[str, str], log: Path, timeout: float = 300) -> None:
    """Run a command to completion, its output appended to log; ClusterError with the log's end if it fails."""
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(command[2:] if command[:2] == [sys.executable, '-m'] else command)}\n".encode())
        out.flush()
        try:
            done = subprocess.run(list(command), env=dict(env), cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"{what} took over {timeout:.0f} s; see {log}") from None
    if done.returncode != 0:
        raise ClusterError(f"{what} failed (exit {done.returncode}):\n{tail(log)}")


def tail(log: Path | str, lines: int = 20) -> str:
    """The end of a log, indented, for an error message."""
    try:
        text = Path(log).read_text(errors="replace")
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


@contextmanager
def _prefect_client(config: ClusterConfig, api_url: str | None = None) -> Iterator[Any]:
    """A Prefect client on the cluster's server (or api_url), whatever PREFECT_API_URL this shell has."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url or config.api_url}), \
            get_client(sync_client=True) as client:
        yield client


def pool_exists(config: ClusterConfig) -> bool:
    """Whether the server has the work pool already."""
    from prefect.exceptions import ObjectNotFound

    with _prefect_client(config) as client:
        try:
            client.read_work_pool(config.pool)
        except ObjectNotFound:
            return False
    return True


def apply_crash_automation(config: ClusterConfig, api_url: str | None = None) -> None:
    """Create the crash automation on the cluster's server (or api_url's), replacing one of the same name
    (so a changed heartbeat takes effect)."""
    automation = crash_automation(config)
    with _prefect_client(config, api_url) as client:
        for old in client.read_automations_by_name(AUTOMATION_NAME):
            client.delete_automation(old.id)
        client.create_automation(automation)


def wait_until(check: Callable[[], bool], deadline: float, what: str, alive: Launched | None = None) -> None:
    """Poll check until it holds; ClusterError if alive ends first or deadline seconds pass."""
    give_up = time.monotonic() + deadline
    while not check():
        if alive is not None and not alive.running():
            raise ClusterError(f"{alive.name} exited before {what}:\n{tail(alive.log)}")
        if time.monotonic() > give_up:
            raise ClusterError(f"no {what} within {deadline:.0f} s; see {alive.log if alive else 'the logs'}")
        time.sleep(0.5)


def tracker_healthy(bind: str) -> bool:
    """Whether the tracker answers its health check at bind."""
    try:
        with urllib.request.urlopen(f"http://{bind}/healthz", timeout=2) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def up(config: ClusterConfig, say: Callable[[str], None] = print) -> None:
    """Bring the cluster up; on any failure stop what this call started and raise ClusterError."""
    registry = Registry(config.root)
    if any(p.running() for p in registry.load()):
        raise ClusterError("the cluster is already up: `tutormax cluster status` says what runs, "
                           "`tutormax cluster down` stops it")
    registry.clear()  # what it names has ended
    if healthy(config.api_url):
        raise ClusterError(f"something else already answers at {config.api_url}; set CLUSTER_PREFECT_PORT")
    config.root.mkdir(parents=True, exist_ok=True)
    config.prefect_home.mkdir(parents=True, exist_ok=True)
    env = base_env(config)
    try:
        _up(config, registry, env, say)
    except BaseException:
        say("stopping what was started")
        stop_all(registry.load(), say)
        registry.clear()
        raise


def _up(config: ClusterConfig, registry: Registry, env: dict[str, str], say: Callable[[str], None]) -> None:
    """The steps of `up` in order, each start recorded as it happens."""
    from db.migrate import upgrade

    database = config.prefect_database_url()
    made = ensure_database(config.postgres_url, config.prefect_database)
    say(f"Prefect database {database.render_as_string(hide_password=True)} ({'created' if made else 'exists'})")
    upgrade(config.database_url)
    say(f"application database {make_url(config.database_url).render_as_string(hide_password=True)} migrated")
    start_server(config, registry, say)
    prepare_server(config, env, say)
    for number in range(1, config.workers + 1):
        start_worker(config, number, env, registry, say)
    tracker = launch("tracker", "tracker", tracker_command(config), env, config.root / "tracker.log")
    registry.add(tracker)
    wait_until(lambda: tracker_healthy(config.tracker_bind), 60, f"tracker at http://{config.tracker_bind}/healthz",
               tracker)
    say(f"tracker under gunicorn at http://{config.tracker_bind} (pid {tracker.pid}), log {tracker.log}")
    say(f"\nPrefect UI: {config.ui_url}\nexport PREFECT_API_URL={config.api_url}  # for prefect commands in this shell")


def start_server(config: ClusterConfig, registry: Registry, say: Callable[[str], None] = print) -> Launched:
    """`prefect server start` on the cluster's PostgreSQL database, waited for until it answers."""
    server = launch("prefect-server", "server", server_command(config), server_env(config),
                    config.root / "prefect-server.log")
    registry.add(server)
    say(f"Prefect server starting (pid {server.pid}), log {server.log}")
    wait_until(lambda: healthy(config.api_url), 180, f"answer at {config.api_url}/health", server)
    return server


def prepare_server(config: ClusterConfig, env: Mapping[str, str], say: Callable[[str], None] = print) -> None:
    """The work pool (if missing), every deployment in prefect.yaml, and the crash automation."""
    step_log = config.root / "setup.log"
    if pool_exists(config):
        say(f"work pool {config.pool} exists")
    else:
        run_step(f"creating the work pool {config.pool}", work_pool_command(config), env, step_log)
        say(f"work pool {config.pool} created (process)")
    run_step("prefect deploy --all", deploy_command(), env, step_log)
    say(f"deployed every deployment in prefect.yaml to {config.pool}")
    apply_crash_automation(config)
    say(f"automation {AUTOMATION_NAME!r}: Crashed after {config.crash_after_seconds} s without a heartbeat "
        f"(heartbeat every {config.heartbeat_seconds} s)")


def start_worker(config: ClusterConfig, number: int, env: Mapping[str, str], registry: Registry,
                 say: Callable[[str], None] = print) -> Launched:
    """One `prefect worker start` on the pool; its log is appended to, so a restarted worker keeps its history."""
    worker = launch(worker_name(number), "worker", worker_command(config, number), env,
                    config.root / f"{worker_name(number)}.log")
    registry.add(worker)
    say(f"{worker.name} polling {config.pool} (pid {worker.pid}), log {worker.log}")
    return worker


def down(config: ClusterConfig, say: Callable[[str], None] = print) -> list[str]:
    """Stop exactly what `up` started; the names stopped."""
    registry = Registry(config.root)
    processes = registry.load()
    if not processes:
        say("nothing to stop: no cluster was started here")
        return []
    stopped = stop_all(processes, say)
    if not stopped:
        say("nothing to stop: every process the cluster started has already ended")
    registry.clear()
    return stopped


def status_lines(config: ClusterConfig, processes: Sequence[Launched], api_up: bool, tracker_up: bool,
                 workers_online: int | None) -> list[str]:
    """What runs, as an operator reads it."""
    if not processes:
        return ["the cluster is down (no processes recorded in " + str(config.root / REGISTRY) + ")"]
    lines = [f"{p.name:<15} pid {p.pid:<8} {'up' if p.alive() else 'GONE':<5} {p.log}" for p in processes]
    lines.append(f"Prefect API {config.api_url}: {'healthy' if api_up else 'NOT ANSWERING'}; UI {config.ui_url}")
    if workers_online is not None:
        lines.append(f"work pool {config.pool}: {workers_online} worker(s) online")
    lines.append(f"tracker http://{config.tracker_bind}: {'healthy' if tracker_up else 'NOT ANSWERING'}")
    return lines


def workers_online(config: ClusterConfig) -> int | None:
    """Workers the server has heard from lately (None if it cannot be asked)."""
    try:
        with _prefect_client(config) as client:
            workers = client.read_workers_for_work_pool(config.pool)
    except Exception:  # the server is down or the pool missing: status says so elsewhere
        return None
    return sum(1 for w in workers if str(getattr(w, "status", "")).upper().endswith("ONLINE"))


def status(config: ClusterConfig) -> list[str]:
    """`tutormax cluster status`: the recorded processes, then what the server and the tracker answer."""
    processes = Registry(config.root).load()
    api_up = healthy(config.api_url) if processes else False
    return status_lines(config, processes, api_up, tracker_healthy(config.tracker_bind) if processes else False,
                        workers_online(config) if api_up else None)
