"""What every benchmark shares: JSON figure lines on stdout, progress on stderr, a fresh PostgreSQL database."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PG_ADMIN = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def emit(figure: str, value, unit: str, **extra) -> None:
    """One figure as one JSON line (the convention in benchmarks/README.md)."""
    print(json.dumps({"figure": figure, "value": value, "unit": unit, **extra}), flush=True)


class CpuUse:
    """Wall time, this process's CPU time, and how busy the whole machine was, over a with block.

    On these 2-core machines the database and the SMTP sink share the cores with the process
    measured: machine_busy near 1 says a figure is bound by the cores, not by waiting.
    """

    def __enter__(self) -> CpuUse:
        self._wall, self._cpu, self._machine = time.perf_counter(), time.process_time(), _machine_ticks()
        return self

    def __exit__(self, *exc) -> None:
        busy, total = (after - before for after, before in zip(_machine_ticks(), self._machine))
        self.seconds = time.perf_counter() - self._wall
        self.cpu_seconds = time.process_time() - self._cpu
        self.machine_busy = busy / total if total else 0.0

    def figures(self) -> dict[str, float]:
        return {"seconds": round(self.seconds, 2), "process_cpu_s": round(self.cpu_seconds, 2),
                "machine_busy": round(self.machine_busy, 3), "cores": os.cpu_count()}


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of every core since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return sum(ticks) - idle, sum(ticks)


def percentile(values: list[float], q: float) -> float:
    """The value q of the way up the sorted values (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_database(name: str) -> str:
    """Drop and create a benchmark database on the local PostgreSQL; its URL."""
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def start_sink(port: int, keep: Path | None = None) -> subprocess.Popen:
    """Postfix's smtp-sink on port; with keep, each message it accepts becomes a file there (mtime: when).

    The files are written as the postfix user, so keep (a folder of its own, e.g. tempfile.mkdtemp(),
    whose parents that user can pass through) is handed to it.
    """
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(binary).exists():
        sys.exit("smtp-sink not found: run `make smtp-sink` (installs Debian's postfix package)")
    dump = []
    if keep is not None:
        shutil.chown(keep, user="postfix")
        dump = ["-d", f"{keep}/m."]  # a file per message: m.<random hex>
    proc = subprocess.Popen([binary, "-u", "postfix", *dump, f"127.0.0.1:{port}", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("smtp-sink did not start")
