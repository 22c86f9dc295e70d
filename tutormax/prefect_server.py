"""A local Prefect server in its own process group: started explicitly, waited for patiently, stopped cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path


class PrefectServerError(RuntimeError):
    """The server exited or stayed silent before it answered its health check."""


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Whether a Prefect API answers its health check now."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):  # refused, timed out, an HTTP error, or no URL at all
        return False


def server_command(host: str, port: int) -> list[str]:
    """`prefect server start` on host:port, with the Python running this program."""
    return [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (the log is empty)"


class PrefectServer:
    """A running server: launch() it, wait_healthy(), then stop()."""

    def __init__(self, process: subprocess.Popen, api_url: str, log: Path) -> None:
        self.process, self.api_url, self.log = process, api_url, log

    @classmethod
    def launch(cls, port: int, *, home: Path, log: Path, host: str = "127.0.0.1",
               command: Sequence[str] | None = None) -> PrefectServer:
        """Start the server process and return at once (its first start migrates its database: slow)."""
        api_url = f"http://{host}:{port}/api"
        home.mkdir(parents=True, exist_ok=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        # the UI asks the server at PREFECT_API_URL, else at port 4200: it must name this server
        env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": api_url,
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        with open(log, "wb") as out:
            # a session of its own: stop() signals the whole group, whatever the server started
            process = subprocess.Popen(list(command or server_command(host, port)), env=env, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return cls(process, api_url, log)

    def wait_healthy(self, deadline: float) -> None:
        """Return once the API answers; stop the server and raise PrefectServerError if it dies or deadline passes."""
        give_up = time.monotonic() + deadline
        while not healthy(self.api_url):
            if self.process.poll() is not None:
                self.stop()  # whatever it started goes with it
                raise PrefectServerError(
                    f"the Prefect server exited (code {self.process.returncode}) before {self.api_url}/health "
                    f"answered; the end of its log {self.log}:\n{_tail(self.log)}")
            if time.monotonic() > give_up:
                self.stop()
                raise PrefectServerError(
                    f"the Prefect server did not answer {self.api_url}/health within {deadline:.0f} s and was "
                    f"stopped; the end of its log {self.log}:\n{_tail(self.log)}")
            time.sleep(0.25)

    def stop(self, grace: float = 20.0) -> None:
        """Ask the server's process group to end; kill it if it has not after grace seconds."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:  # already gone, with everything it started
                pass
            try:
                self.process.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue


def start(port: int, *, home: Path, log: Path, deadline: float, host: str = "127.0.0.1",
          command: Sequence[str] | None = None) -> PrefectServer:
    """Launch a server and wait until it answers; nothing is left running if it does not."""
    server = PrefectServer.launch(port, home=home, log=log, host=host, command=command)
    try:
        server.wait_healthy(deadline)
    except BaseException:
        server.stop()
        raise
    return server
