"""What every benchmark shares: JSON figure lines on stdout, progress on stderr, a fresh PostgreSQL database."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PG_ADMIN = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def emit(figure: str, value, unit: str, **extra) -> None:
    """One figure as one JSON line (the convention in benchmarks/README.md)."""
    print(json.dumps({"figure": figure, "value": value, "unit": unit, **extra}), flush=True)


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
