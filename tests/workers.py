"""Real django-q2 worker processes for tests: ``manage.py qcluster`` against the test
database and broker, killed (SIGKILL) and restarted where crashes matter."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import IO

from tests.servers import PROJECT_ROOT, server_env


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    """Polls ``condition`` until it holds, or fails the test naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def start_cluster(log: IO[bytes], **env: str) -> subprocess.Popen:
    """``manage.py qcluster`` in its own process group (the sentinel, pusher, monitor
    and workers die together), with ``env`` on top of the test settings (e.g.
    WHATSAPP_GRAPH_URL of the fake Graph API, Q_WORKERS, Q_TIMEOUT)."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=PROJECT_ROOT,
        env=server_env(**env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_cluster(process: subprocess.Popen) -> None:
    """SIGKILL to the whole cluster: what a crashed machine does to it."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
