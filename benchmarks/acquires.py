"""Send-rate limit acquires a Prefect server on PostgreSQL answers a second, from 1 to 16 clients at once.

With SMTP_RATE_LIMIT set, every chunk of messages takes its slots from the server first
(tasks/send_rate.py): the rate of acquires bounds rate-limited sending at a chunk times it.
The server runs as `tutormax cluster` runs it (tutormax.cluster: its own PostgreSQL database)
with a limit far from binding, so each acquire is granted at once and only the round trip and
the server's work are timed; threads of this process stand for runs on several hosts. The
baseline, in the same run: the server's health check, a round trip that touches no database.
Prints one JSON line per figure; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from common import PG_ADMIN, CpuUse, emit, free_port, fresh_database, log, percentile

PREFECT_DB = "tutormax_bench_acquires_prefect"
LIMIT = "tutormax-bench-acquires"


def timed(call, clients: int, each: int) -> tuple[list[float], CpuUse]:
    """Every call's seconds, clients threads making each calls; and the machine over the whole."""
    waits: list[float] = []

    def work() -> None:
        for _ in range(each):
            started = time.perf_counter()
            call()
            waits.append(time.perf_counter() - started)  # list.append is atomic under the GIL

    threads = [threading.Thread(target=work) for _ in range(clients)]
    with CpuUse() as use:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return waits, use


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--each", type=int, default=150, help="acquires per client")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()

    from tutormax import cluster

    folder = Path(tempfile.mkdtemp(prefix="tutormax-bench-acquires-"))
    fresh_database(PREFECT_DB)
    config = cluster.ClusterConfig(root=folder, pool=cluster.work_pool_name(), database_url="sqlite://",
                                   postgres_url=PG_ADMIN, prefect_database=PREFECT_DB, port=free_port())
    os.environ.update(PREFECT_API_URL=config.api_url, PREFECT_HOME=str(config.prefect_home),
                      PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")
    config.prefect_home.mkdir(parents=True, exist_ok=True)
    registry = cluster.Registry(folder)
    try:
        cluster.start_server(config, registry, log)
        from prefect import get_client
        from prefect.concurrency.sync import rate_limit

        from tasks.send_rate import SendRate

        chunk = SendRate(6_000_000).chunk  # a high limit's chunk: the largest an acquire takes
        with get_client(sync_client=True) as client:
            client.upsert_global_concurrency_limit_by_name(LIMIT, 1_000_000, 100_000.0)

        def acquire() -> None:
            rate_limit(LIMIT, occupy=chunk, strict=True)

        def health() -> None:
            with urllib.request.urlopen(f"{config.api_url}/health", timeout=10) as response:
                response.read()

        acquire()  # the first call opens the client's connections
        results = []
        for clients in args.clients:
            log(f"{clients} client(s), {args.each} acquires each")
            waits, use = timed(acquire, clients, args.each)
            base, _ = timed(health, clients, args.each)
            results.append((clients, waits, use, base))
    finally:
        cluster.stop_all(registry.load(), log)
        shutil.rmtree(folder, ignore_errors=True)

    for clients, waits, use, base in results:
        rate = len(waits) / use.seconds
        emit(f"acquires_per_s_{clients}_clients", round(rate, 1), "acquires/s", **use.figures(),
             messages_per_s=round(rate * chunk, 1), chunk=chunk)
        emit(f"acquire_ms_p50_{clients}_clients", round(statistics.median(waits) * 1000, 1), "ms",
             p99=round(percentile(waits, 0.99) * 1000, 1), baseline="health_ms_p50",
             health_ms_p50=round(statistics.median(base) * 1000, 1),
             ratio=round(statistics.median(waits) / statistics.median(base), 1))


if __name__ == "__main__":
    main()
