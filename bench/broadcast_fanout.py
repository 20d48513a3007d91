"""Broadcast fan-out through the real broadcast path, against the fake Graph API.

    .venv/bin/python bench/broadcast_fanout.py                         # 3,000 leads per cap
    .venv/bin/python bench/broadcast_fanout.py --leads 20000 --caps 80
    DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/heroshhi REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python bench/broadcast_fanout.py --workers 2          # production shape

Needs a migrated database (make migrate). For each cap (80 and 1,000 msg/s by default) it
creates a workspace with a Cloud API connection to the fake Graph API server (tests/
fake_graph.py, started in this process on 127.0.0.1) and N leads (set-based inserts: the
fixture, not the path measured), then creates a broadcast to all of them with
``campaigns.services.broadcasts.broadcast_create`` — the per-lead variables, the
audience filter and the snapshot into queued outbox messages, timed — and delivers it
with N worker processes (multiprocessing, forked) that take the broadcast's batch tasks
from a shared queue, as django-q2 workers would take them from the broker, and run the
body of ``campaigns.tasks.broadcasts.send_batch``: ``messages_deliver_batch`` (the
claim, the opt-out check, the shared throughput cap, the real CloudApiProvider over
HTTP), then the completion check. A batch given back after a retryable error goes
back on the queue after its pause (django-q2 would schedule it).

``--redeliver`` hands that fraction of the batch tasks out twice, as django-q2 may (at
least once). Printed per cap: the snapshot time, the achieved rate in the full seconds of
the run ÷ the cap, the busiest wall-clock second at the server, duplicates (message ids
with more than one request, by ``biz_opaque_callback_data``), lost messages (not sent)
and the broadcast's final status.
"""

import argparse
import multiprocessing
import os
import random
import sys
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

import django_q.tasks  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connections  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import Account, User  # noqa: E402
from campaigns.models import Broadcast  # noqa: E402
from campaigns.services.broadcasts import SEND_BATCH_TASK, broadcast_complete_if_done, broadcast_create  # noqa: E402
from leads.models import Lead  # noqa: E402
from messaging.models import Message, WhatsAppConnection  # noqa: E402
from messaging.services import messages_deliver_batch, verify_token_digest  # noqa: E402
from tests.fake_graph import FakeGraphServer  # noqa: E402

STOP = None


class TimedFakeGraph(FakeGraphServer):
    """The tests' fake Graph API, also noting when each send arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    def start(self) -> "TimedFakeGraph":
        super().start()
        # http.server writes headers and body in two segments; with Nagle's algorithm the
        # body waits for the client's delayed ACK (~40 ms a request on Linux). Meta's
        # servers don't behave like that.
        self._server.RequestHandlerClass.disable_nagle_algorithm = True
        return self

    def _answer(self, method: str, path: str, query: dict, headers: dict, body: dict | None):
        if method == "POST" and path.endswith("/messages"):
            arrived = time.time()
            with self._lock:
                self.arrivals.append(arrived)
        return super()._answer(method, path, query, headers, body)


def create_fixture(*, graph: FakeGraphServer, cap: int, count: int) -> tuple[Account, User]:
    """A workspace, its admin, its connection with this cap, and ``count`` leads who
    wrote an hour ago (their 24-hour window is open), inserted set-based."""
    tag = uuid.uuid4().hex[:10]
    account = Account.objects.create(name=f"Bench broadcast_fanout {tag}")
    admin = User.objects.create_user(f"bench-{tag}@example.com", None, account=account, role=User.Role.ADMIN)
    WhatsAppConnection.objects.create(
        account=account,
        phone_number_id=f"bench-{tag}",
        waba_id=f"bench-waba-{tag}",
        access_token=graph.state.access_token,
        app_secret="bench-app-secret",  # noqa: S106 (a fixture for the fake server)
        verify_token_hash=verify_token_digest(f"bench-{tag}"),
        throughput_cap=cap,
    )
    wrote = timezone.now() - timedelta(hours=1)
    Lead.objects.bulk_create(
        [
            Lead(account=account, name=f"Bench lead {i}", phone=f"+1555{i:07d}", last_inbound_at=wrote, segment="hot")
            for i in range(count)
        ],
        batch_size=2000,
    )
    return account, admin


def worker(tasks, results, ready, go) -> None:
    """A forked worker: takes (broadcast id, message ids) batches until STOP."""
    statuses: Counter = Counter()
    batches = retried = 0
    ready.release()
    go.wait()
    while (task := tasks.get()) is not STOP:
        broadcast_id, message_ids = task
        result = messages_deliver_batch(message_ids=message_ids)
        batches += 1
        statuses.update(result.statuses)
        if result.retry_ids:  # given back after a retryable error: a later task
            retried += len(result.retry_ids)
            time.sleep(min(result.retry_error.retry_after or 0.5, 2))
            tasks.put((broadcast_id, result.retry_ids))
        broadcast_complete_if_done(broadcast_id=broadcast_id)
    connections.close_all()
    results.put({"statuses": dict(statuses), "batches": batches, "retried": retried})


def run(*, graph: TimedFakeGraph, cap: int, count: int, args: argparse.Namespace) -> dict:
    account, admin = create_fixture(graph=graph, cap=cap, count=count)
    queued: list = []
    original = django_q.tasks.async_task
    django_q.tasks.async_task = lambda func, *task_args, **kwargs: queued.append((func, task_args))
    try:
        started = time.monotonic()
        broadcast = broadcast_create(user=admin, name="Bench", text="Hi {{first_name}}", filters={"segment": ["hot"]})
        snapshot_seconds = time.monotonic() - started
    finally:
        django_q.tasks.async_task = original
    batches = [task_args for func, task_args in queued if func == SEND_BATCH_TASK]
    handed = list(batches)
    for batch in random.sample(batches, int(len(batches) * args.redeliver)):
        handed.insert(random.randint(handed.index(batch) + 1, len(handed)), batch)  # a duplicate task, later
    graph.reset()
    graph.state.latency = args.latency
    graph.arrivals.clear()

    connections.close_all()  # every worker opens its own connection
    context = multiprocessing.get_context("fork")
    tasks, results = context.Queue(), context.Queue()
    ready, go = context.Semaphore(0), context.Event()
    for task in handed:
        tasks.put(task)
    processes = [context.Process(target=worker, args=(tasks, results, ready, go)) for _ in range(args.workers)]
    for process in processes:
        process.start()
    for _ in processes:
        ready.acquire()
    started = time.time()
    go.set()
    finished = Broadcast.objects.filter(pk=broadcast.pk).exclude(status=Broadcast.Status.SENDING)
    deadline = time.monotonic() + count / cap * 3 + 60
    while not finished.exists() and time.monotonic() < deadline:
        time.sleep(0.25)
    elapsed = time.time() - started
    for _ in processes:
        tasks.put(STOP)
    outcomes = [results.get() for _ in processes]
    for process in processes:
        process.join()

    broadcast.refresh_from_db()
    references = Counter(body.get("biz_opaque_callback_data") for body in graph.sent_messages() if body is not None)
    per_second = Counter(int(t) for t in graph.arrivals)
    seconds = sorted(per_second)
    full = [per_second.get(s, 0) for s in range(seconds[1], seconds[-1])] if len(seconds) > 2 else []
    statuses = Counter(Message.objects.filter(broadcast=broadcast).values_list("status", flat=True).order_by())
    summary = {
        "cap": cap,
        "leads": count,
        "recipients": broadcast.recipients,
        "snapshot_seconds": snapshot_seconds,
        "tasks": len(handed),
        "elapsed": elapsed,
        "full_second_rate": sum(full) / len(full) if full else float("nan"),
        "busiest_second": max(per_second.values()) if per_second else 0,
        "requests": sum(references.values()),
        "duplicates": sum(1 for n in references.values() if n > 1),
        "lost": broadcast.recipients - statuses.get(Message.Status.SENT, 0),
        "retried": sum(o["retried"] for o in outcomes),
        "status": broadcast.status,
    }
    account.delete()
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=3000, help="leads in the broadcast, per cap")
    parser.add_argument("--caps", default="80,1000", help="comma-separated msg/s caps")
    parser.add_argument("--workers", type=int, default=2, help="delivery worker processes")
    parser.add_argument("--redeliver", type=float, default=0.05, help="fraction of batch tasks handed out twice")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the fake Graph API takes to answer")
    args = parser.parse_args()

    settings.DEBUG = False  # no query log: measure the production path
    graph = TimedFakeGraph().start()
    settings.WHATSAPP_GRAPH_URL = graph.base_url
    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(
        f"database {engine}, cache {backend}, {args.workers} worker processes, fake Graph API answering in "
        f"{args.latency * 1000:.0f} ms, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    try:
        for cap in (int(c) for c in args.caps.split(",")):
            r = run(graph=graph, cap=cap, count=args.leads, args=args)
            print(
                f"cap {r['cap']:>5}/s  {r['leads']} leads: snapshot of {r['recipients']} messages in "
                f"{r['snapshot_seconds']:.2f} s; sent in {r['elapsed']:.1f} s ({r['tasks']} batch tasks)  "
                f"rate {r['full_second_rate']:.0f}/s = {r['full_second_rate'] / cap:.3f} of the cap  "
                f"busiest second {r['busiest_second']}  requests {r['requests']}  duplicates {r['duplicates']}  "
                f"lost {r['lost']}  given back {r['retried']}  broadcast {r['status']}"
            )
    finally:
        graph.stop()


if __name__ == "__main__":
    main()
