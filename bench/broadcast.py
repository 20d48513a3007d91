"""A broadcast to N leads through real django-q2 clusters, against a fake Graph API
that behaves like Meta under load (issue 5, item 6).

    DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/heroshhi REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python bench/broadcast.py                               # 100,000 leads, caps 80 and 1,000
    ... bench/broadcast.py --leads 5000 --caps 80 --seconds 0             # quick, run to completion

PostgreSQL and a Redis broker only (refused on SQLite / the ORM broker: not the shape
measured). Needs a migrated database (make migrate); uses django-q2's queue of this
REDIS_URL (purged before and after each cap: don't point it at a broker in use).

For each cap (``--caps``, 80 and 1,000 msg/s by default) it creates a workspace with a
Cloud API connection of that ``throughput_cap`` and ``--leads`` leads who wrote an hour
ago (set-based inserts: the fixture, not the path measured), starts ``--clusters`` real
``manage.py qcluster`` processes (tests/workers.py; ``--q-workers`` worker processes
each: 2 clusters x 1 worker by default, so 2 worker processes share the number's cap
through Redis) pointed at the fake Graph API (tests/fake_graph.py, in this process on
127.0.0.1), and creates a due-now broadcast to all the leads with
``campaigns.services.broadcasts.broadcast_create``. Above SNAPSHOT_INLINE_MAX leads
(20,000) that queues ``campaigns.tasks.broadcasts.start``, which a worker runs: the
snapshot is timed from the call until the broadcast row shows ``sending`` (the
snapshot transaction committed), so it includes the task's pickup (under a second).
The workers then run the real ``send_batch`` tasks from the Redis broker.

The fake Graph API answers like Meta: a send above the number's cap in a wall-clock
second gets HTTP 400 with error 130429, and ``--fail-rate`` of the sends (1%) a
transient HTTP 500. Both are retried by the real delivery path.

Bounded run time: a 100,000-lead broadcast at 80 msg/s takes 21 minutes, so the rate is
measured over a fixed window: the ``--seconds`` full wall-clock seconds after the first
accepted send (60 by default). Then the broadcast is cancelled (the queued messages no
worker holds are deleted), the clusters are stopped with SIGTERM (a batch being sent
finishes) and the queue purged. Duplicates are counted among everything sent; lost
messages only when the broadcast ran to completion within the window (``--seconds 0``:
no window, run to completion), otherwise "n/a". Printed per cap: the snapshot time,
the accepted sends per second in the window / the cap, the busiest wall-clock second
(accepted sends, and all send requests), 130429 and 5xx answers, duplicates (message ids
with more than one accepted request, by ``biz_opaque_callback_data``), lost (messages
with no accepted request), the broadcast's final status, and the load average.
"""

import argparse
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heroshhi.settings")
os.environ.setdefault("CACHE_KEY_PREFIX", "heroshhi-bench")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402
from django_q.brokers import get_broker  # noqa: E402

from accounts.models import Account, User  # noqa: E402
from campaigns.models import Broadcast  # noqa: E402
from campaigns.services.broadcasts import SNAPSHOT_INLINE_MAX, broadcast_cancel, broadcast_create  # noqa: E402
from leads.models import Lead  # noqa: E402
from messaging.models import Message, WhatsAppConnection  # noqa: E402
from messaging.services import verify_token_digest  # noqa: E402
from tests.fake_graph import FakeGraphServer, RecordedRequest  # noqa: E402
from tests.workers import kill_cluster, start_cluster  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- Shared with bench/scheduler.py ---------------------------------------------------------


def require_production_shape() -> None:
    """PostgreSQL and a Redis broker, or a clear refusal."""
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        sys.exit(
            "This benchmark needs PostgreSQL and Redis (the production shape): set DATABASE_URL=postgres://... "
            f"and REDIS_URL=redis://... (now: database {connection.vendor}, REDIS_URL "
            f"{'set' if settings.REDIS_URL else 'unset'})."
        )


def machine_line(args: argparse.Namespace) -> str:
    return (
        f"database {connection.vendor}, broker redis, {args.clusters} qcluster x {args.q_workers} worker(s), "
        f"{os.cpu_count()} cores, load average {load()}"
    )


def load() -> str:
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (Linux /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


def workspace_create(*, graph: FakeGraphServer, cap: int, label: str) -> tuple[Account, User, WhatsAppConnection]:
    """A workspace, its admin and its Cloud API connection with this cap, at the fake
    Graph API, which refuses (130429) what goes above the same cap."""
    tag = uuid.uuid4().hex[:10]
    account = Account.objects.create(name=f"Bench {label} {tag}")
    admin = User.objects.create_user(f"bench-{tag}@example.com", None, account=account, role=User.Role.ADMIN)
    whatsapp = WhatsAppConnection.objects.create(
        account=account,
        phone_number_id=f"bench-{tag}",
        waba_id=f"bench-waba-{tag}",
        access_token=graph.state.access_token,
        app_secret="bench-app-secret",  # noqa: S106 (a fixture for the fake server)
        verify_token_hash=verify_token_digest(f"bench-{tag}"),
        throughput_cap=cap,
    )
    graph.set_rate_cap(whatsapp.phone_number_id, cap)
    return account, admin, whatsapp


def workspace_delete(account: Account) -> None:
    """Deletes the fixture: its messages and leads in one statement each (the ORM's
    cascade would load 100,000 rows), then the rest."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Message._meta.db_table} WHERE account_id = %s", [account.pk])  # noqa: S608
        cursor.execute(f"DELETE FROM {Lead._meta.db_table} WHERE account_id = %s", [account.pk])  # noqa: S608
    account.delete()


def vacuum(*models) -> None:
    """VACUUM ANALYZE after the fixture's bulk inserts, as autovacuum would."""
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {', '.join(m._meta.db_table for m in models)}")


class Clusters:
    """``count`` real ``manage.py qcluster`` processes (each in its own process group),
    their output in a temporary directory."""

    def __init__(self, *, count: int, q_workers: int, graph_url: str, **env: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-qcluster-"))
        self.logs = [(self.dir / f"qcluster-{i}.log").open("wb") for i in range(count)]
        self.processes: list[subprocess.Popen] = [
            start_cluster(log, WHATSAPP_GRAPH_URL=graph_url, Q_WORKERS=str(q_workers), **env) for log in self.logs
        ]

    def wait_ready(self, timeout: float = 60) -> None:
        """Until every cluster logged that it runs (its workers are up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            texts = [log_path.read_text(errors="replace") for log_path in self.log_paths]
            if all("running" in text for text in texts):
                return
            if any(p.poll() is not None for p in self.processes):
                break
            time.sleep(0.2)
        sys.exit(f"qcluster did not start; see {self.dir}:\n" + self.tail())

    @property
    def log_paths(self) -> list[Path]:
        return [Path(log.name) for log in self.logs]

    def tail(self, chars: int = 3000) -> str:
        return "\n".join(path.read_text(errors="replace")[-chars:] for path in self.log_paths)

    def stop(self) -> None:
        """SIGKILL to each cluster's process group (callers first wait for the sends in
        flight to settle: django-q2's SIGTERM stop can hang for minutes)."""
        for process in self.processes:
            kill_cluster(process)
        for log in self.logs:
            log.close()

    def errors(self) -> int:
        return sum(path.read_text(errors="replace").count("Traceback") for path in self.log_paths)


def sends_of(graph: FakeGraphServer, phone_number_id: str) -> list[RecordedRequest]:
    return [r for r in graph.send_requests() if f"/{phone_number_id}/messages" in r.path]


def send_figures(requests: list[RecordedRequest]) -> dict:
    """Answers, duplicates and per-second counts of a number's send requests."""
    accepted = [r for r in requests if r.status == 200]
    references = Counter((r.json or {}).get("biz_opaque_callback_data") for r in accepted)
    return {
        "requests": len(requests),
        "accepted": len(accepted),
        "references": references,
        "duplicates": sum(1 for n in references.values() if n > 1),
        "throttled": sum(1 for r in requests if r.code == 130429),
        "server_errors": sum(1 for r in requests if (r.status or 0) >= 500),
        "busiest_accepted": max(Counter(int(r.at) for r in accepted).values(), default=0),
        "busiest_requests": max(Counter(int(r.at) for r in requests).values(), default=0),
    }


def purge_broker() -> None:
    get_broker().purge_queue()


# --- The broadcast --------------------------------------------------------------------------


def leads_create(account: Account, count: int) -> None:
    wrote = timezone.now() - timedelta(hours=1)
    Lead.objects.bulk_create(
        (
            Lead(account=account, name=f"Bench lead {i}", phone=f"+1555{i:07d}", last_inbound_at=wrote, segment="hot")
            for i in range(count)
        ),
        batch_size=5000,
    )
    vacuum(Lead, Message)


def run(*, graph: FakeGraphServer, cap: int, args: argparse.Namespace) -> dict:
    account, admin, whatsapp = workspace_create(graph=graph, cap=cap, label="broadcast")
    try:
        leads_create(account, args.leads)
        purge_broker()
        clusters = Clusters(count=args.clusters, q_workers=args.q_workers, graph_url=graph.base_url)
        try:
            clusters.wait_ready()
            return measure(graph=graph, cap=cap, admin=admin, whatsapp=whatsapp, clusters=clusters, args=args)
        finally:
            clusters.stop()
            purge_broker()
    finally:
        if not args.keep:
            workspace_delete(account)


def measure(*, graph, cap: int, admin: User, whatsapp: WhatsAppConnection, clusters: Clusters, args) -> dict:
    load_before = load()
    started = time.monotonic()
    broadcast = broadcast_create(user=admin, name="Bench", text="Hi {{first_name}}", filters={"segment": ["hot"]})
    create_seconds = time.monotonic() - started
    row = Broadcast.objects.filter(pk=broadcast.pk)
    while row.filter(status=Broadcast.Status.SCHEDULED).exists():
        if time.monotonic() - started > 300:
            sys.exit("the broadcast did not start within 300 s:\n" + clusters.tail())
        time.sleep(0.05)
    snapshot_seconds = time.monotonic() - started
    broadcast.refresh_from_db()
    # started_at is stamped as the snapshot's transaction begins: before it, the task's pickup.
    pickup_seconds = (broadcast.started_at - broadcast.created_at).total_seconds()

    def first_accepted() -> float | None:
        return min((r.at for r in sends_of(graph, whatsapp.phone_number_id) if r.status == 200), default=None)

    deadline = time.monotonic() + 120
    while (first := first_accepted()) is None:
        if time.monotonic() > deadline or not row.filter(status=Broadcast.Status.SENDING).exists():
            sys.exit("no send reached the fake Graph API within 120 s:\n" + clusters.tail())
        time.sleep(0.1)
    window_start = math.floor(first) + 1
    window_end = window_start + args.seconds if args.seconds else math.inf
    busy_before = machine_busy()
    limit = time.monotonic() + (args.seconds + 30 if args.seconds else broadcast.recipients / cap * 3 + 120)
    while time.time() < window_end and time.monotonic() < limit:
        if not row.filter(status=Broadcast.Status.SENDING).exists():
            break
        time.sleep(0.25)
    busy_after = machine_busy()
    load_during = load()
    completed = not row.filter(status=Broadcast.Status.SENDING).exists()
    if not completed:
        broadcast_cancel(broadcast=broadcast)
        # The batches being sent finish (or give their messages back) before the stop.
        claimed = Message.objects.filter(broadcast=broadcast, status=Message.Status.QUEUED, claim_token__isnull=False)
        settle = time.monotonic() + 90
        while claimed.exists() and time.monotonic() < settle:
            time.sleep(0.25)
    clusters.stop()
    purge_broker()
    broadcast.refresh_from_db()

    requests = sends_of(graph, whatsapp.phone_number_id)
    figures = send_figures(requests)
    accepted_at = sorted(r.at for r in requests if r.status == 200)
    if completed:  # over the full seconds of the run
        last = math.floor(accepted_at[-1])
        seconds = list(range(window_start, last))
    else:
        seconds = list(range(window_start, window_start + args.seconds))
    per_second = Counter(int(t) for t in accepted_at)
    in_window = sum(per_second.get(s, 0) for s in seconds)
    rate = in_window / len(seconds) if seconds else float("nan")
    lost = "n/a"
    if completed:
        ids = {str(pk) for pk in Message.objects.filter(broadcast=broadcast).values_list("pk", flat=True)}
        lost = len(ids - set(figures["references"])) + max(broadcast.recipients - len(ids), 0)
    busy, total = busy_after[0] - busy_before[0], busy_after[1] - busy_before[1]
    return {
        "cap": cap,
        "recipients": broadcast.recipients,
        "inline": broadcast.recipients <= SNAPSHOT_INLINE_MAX,
        "create_seconds": create_seconds,
        "snapshot_seconds": snapshot_seconds,
        "pickup_seconds": pickup_seconds,
        "window": len(seconds),
        "rate": rate,
        "completed": completed,
        "lost": lost,
        "status": broadcast.status,
        "cancelled_unsent": broadcast.cancelled_unsent,
        "cpu_busy": busy / total if total else float("nan"),
        "load_before": load_before,
        "load_during": load_during,
        "tracebacks": clusters.errors(),
        **figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=100_000, help="leads in the broadcast, per cap")
    parser.add_argument("--caps", default="80,1000", help="comma-separated msg/s caps, each its own number")
    parser.add_argument("--seconds", type=int, default=60, help="measuring window after the first send (0: to the end)")
    parser.add_argument("--clusters", type=int, default=2, help="qcluster processes")
    parser.add_argument("--q-workers", type=int, default=1, help="worker processes of each qcluster (Q_WORKERS)")
    parser.add_argument("--fail-rate", type=float, default=0.01, help="fraction of sends answered HTTP 500")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fake server's random failures")
    parser.add_argument("--keep", action="store_true", help="keep the fixture workspaces")
    args = parser.parse_args()

    require_production_shape()
    logging.getLogger("django-q").setLevel(logging.WARNING)  # not a line per task queued
    graph = FakeGraphServer(fail_rate=args.fail_rate, seed=args.seed).start()
    print(machine_line(args) + f", fake Graph API failing {args.fail_rate:.1%} of sends with HTTP 500")
    try:
        for cap in (int(c) for c in args.caps.split(",")):
            graph.reset()
            r = run(graph=graph, cap=cap, args=args)
            where = "inline" if r["inline"] else "by a worker task"
            window = f"{r['window']} s window" if not r["completed"] else f"{r['window']} full s, run to completion"
            print(
                f"cap {cap:>5}/s  snapshot of {r['recipients']} messages {where}: {r['snapshot_seconds']:.2f} s "
                f"(broadcast_create returned in {r['create_seconds']:.2f} s; the snapshot transaction began "
                f"{r['pickup_seconds']:.2f} s after the broadcast was created)\n"
                f"    rate {r['rate']:.1f}/s = {r['rate'] / cap:.3f} of the cap ({window})  "
                f"busiest second {r['busiest_accepted']} accepted / {r['busiest_requests']} requests\n"
                f"    requests {r['requests']}  accepted {r['accepted']}  130429 answers {r['throttled']}  "
                f"5xx answers {r['server_errors']}  duplicates {r['duplicates']}  lost {r['lost']}\n"
                f"    broadcast {r['status']} (cancelled unsent {r['cancelled_unsent']})  "
                f"machine CPU busy {r['cpu_busy']:.0%}  load average {r['load_before']} before, "
                f"{r['load_during']} at the end of the window  worker tracebacks {r['tracebacks']}",
                flush=True,
            )
    finally:
        graph.stop()


if __name__ == "__main__":
    main()
