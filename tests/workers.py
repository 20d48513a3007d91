"""Real django-q2 worker processes for tests: ``manage.py qcluster`` against the test
database and broker, killed (SIGKILL) and restarted where crashes matter."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tests.servers import PROJECT_ROOT, server_env


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    """Polls ``condition`` until it holds, or fails the test naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def wait_all_sent(message_ids, *, timeout: float) -> None:
    """Waits until every message is sent, running the sweeper between looks (every
    minute in production), so the claims of a killed worker are handed back."""
    from messaging import tasks
    from messaging.models import Message

    ids = list(message_ids)

    def all_sent() -> bool:
        if Message.objects.filter(pk__in=ids, status=Message.Status.SENT).count() == len(ids):
            return True
        tasks.requeue_stale_messages()
        time.sleep(1)
        return False

    wait_for(all_sent, timeout=timeout, what="every message sent")


@contextmanager
def cluster_log() -> Iterator[IO[bytes]]:
    """A file for clusters' output, removed afterwards; when the block fails, its last
    lines go to stderr, so the failure shows what the workers said."""
    log = tempfile.NamedTemporaryFile(prefix="qcluster-", suffix=".log", delete=False)  # noqa: SIM115
    try:
        yield log
    except BaseException:
        log.flush()
        sys.stderr.write(Path(log.name).read_text()[-5000:])
        raise
    finally:
        log.close()
        os.unlink(log.name)


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


def echo_sent_statuses(fake_graph) -> None:
    """What Meta does after a worker died between a send and saving its answer: every
    accepted message gets a status webhook echoing our id (``biz_opaque_callback_data``),
    which links the sends whose answer was lost and marks them sent."""
    from django.utils import timezone

    from messaging.models import Message
    from messaging.services import message_status_apply

    reached = {body["biz_opaque_callback_data"] for body in fake_graph.sent_messages()}
    for message_id in Message.objects.filter(pk__in=list(reached), wamid__isnull=True).values_list("pk", flat=True):
        message_status_apply(
            wamid=f"wamid.ECHO{message_id.hex[:12]}",
            status=Message.Status.SENT,
            at=timezone.now(),
            reference=str(message_id),
        )
