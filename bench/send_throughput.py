"""Send throughput through the real batch delivery path, against the fake Graph API.

    .venv/bin/python bench/send_throughput.py                     # 3,000 messages per cap (SQLite)
    DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/heroshhi REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python bench/send_throughput.py --messages 20000    # the issue's figure

Needs a migrated database (make migrate). For each cap (80 and 1,000 msg/s by default) it
creates a workspace with a Cloud API connection to the fake Graph API server (tests/
fake_graph.py, started in this process on 127.0.0.1), queues the messages (set-based
inserts: the fixture, not the path measured; then VACUUM ANALYZE on PostgreSQL, as
autovacuum would), then delivers them with N worker processes (multiprocessing, forked)
standing in for django-q2 workers (without the broker's own cost): each takes batch tasks
of ``--batch`` message ids (what ``messaging.services.queue_delivery_batch`` queues) from a
shared queue and calls ``messaging.services.messages_deliver_batch`` — one claim for the
batch, the opt-out check, the shared per-second cap, the real CloudApiProvider over HTTP
on WHATSAPP_SEND_CONCURRENCY threads, set-based bookkeeping. Ids a batch gives back
(``retry_ids``) go back on the queue.

``--redeliver`` hands that fraction of the batches to the workers twice, as django-q2 may
(at least once), at a random later place in the queue; the claim must keep every message
to one request at the fake server. Printed per cap: the achieved rate in the full seconds
of the run ÷ the cap, the busiest wall-clock second at the server, duplicates (message
ids with more than one request, by ``biz_opaque_callback_data``), lost messages (not
sent), queries per batch, and CPU per message of the workers, their PostgreSQL backends
and the fake server (Linux /proc), and how busy the whole machine was.
"""

import argparse
import cProfile
import io
import multiprocessing
import os
import pstats
import random
import resource
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heroshhi.settings")
os.environ.setdefault("CACHE_KEY_PREFIX", "heroshhi-bench")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import Account  # noqa: E402
from leads.models import Lead  # noqa: E402
from messaging import services  # noqa: E402
from messaging.models import Message, WhatsAppConnection  # noqa: E402
from messaging.services import messages_deliver_batch, verify_token_digest  # noqa: E402
from tests.fake_graph import FakeGraphServer  # noqa: E402

STOP = None
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class TimedFakeGraph(FakeGraphServer):
    """The tests' fake Graph API, also noting when each send arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    def _answer(self, method: str, path: str, query: dict, headers: dict, body: dict | None):
        if method == "POST":
            arrived = time.time()
            with self._lock:
                self.arrivals.append(arrived)
        return super()._answer(method, path, query, headers, body)


def create_fixture(*, graph: FakeGraphServer, cap: int, count: int) -> tuple[Account, list[str]]:
    """A workspace, its connection with this cap, and ``count`` queued text messages to
    as many leads, inserted set-based."""
    tag = uuid.uuid4().hex[:10]
    account = Account.objects.create(name=f"Bench send_throughput {tag}")
    WhatsAppConnection.objects.create(
        account=account,
        phone_number_id=f"bench-{tag}",
        waba_id=f"bench-waba-{tag}",
        access_token=graph.state.access_token,
        app_secret="bench-app-secret",  # noqa: S106 (a fixture for the fake server)
        verify_token_hash=verify_token_digest(f"bench-{tag}"),
        throughput_cap=cap,
    )
    now = timezone.now()
    leads = Lead.objects.bulk_create(
        [
            Lead(account=account, name=f"Bench lead {i}", phone=f"+1555{i:07d}", last_inbound_at=now)
            for i in range(count)
        ],
        batch_size=2000,
    )
    messages = Message.objects.bulk_create(
        [
            Message(
                account=account,
                lead=lead,
                direction=Message.Direction.OUTBOUND,
                type=Message.Type.TEXT,
                status=Message.Status.QUEUED,
                source=Message.Source.BROADCAST,
                provider=Message.Provider.CLOUD,
                body=f"Bench message {i}",
            )
            for i, lead in enumerate(leads)
        ],
        batch_size=2000,
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM (ANALYZE) {Message._meta.db_table}, {Lead._meta.db_table}")
    return account, [str(m.pk) for m in messages]


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (Linux /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


def _profiled_attempts(profiles: list) -> None:
    """cProfile each pool thread's provider requests too (cProfile sees one thread)."""
    local = threading.local()
    original = services._attempt

    def attempt(send, second):
        profiler = getattr(local, "profiler", None)
        if profiler is None:
            profiler = local.profiler = cProfile.Profile(time.thread_time)
            profiles.append(profiler)
        profiler.enable()
        try:
            return original(send, second)
        finally:
            profiler.disable()

    services._attempt = attempt


def worker(tasks, results, ready, go, profile: bool) -> None:
    """A forked delivery worker: takes batch tasks until STOP, delivers each."""
    statuses: Counter = Counter()
    queries = batches = retried = 0
    profiles: list = []

    def count_query(execute, sql, params, many, context):
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()" if connection.vendor == "postgresql" else "SELECT 0")
        backend = cursor.fetchone()[0]
    if profile:
        _profiled_attempts(profiles)
        profiles.append(cProfile.Profile(time.thread_time))
    ready.release()
    go.wait()
    cpu_started, backend_started = time.process_time(), process_cpu(backend) if backend else 0.0
    if profile:
        profiles[-1].enable()
    with connection.execute_wrapper(count_query):
        while (batch := tasks.get()) is not STOP:
            result = messages_deliver_batch(message_ids=batch)
            batches += 1
            statuses.update(result.statuses)
            if result.retry_ids:  # given back (a retryable error, or deferred): a later task
                retried += len(result.retry_ids)
                time.sleep(min(result.retry_error.retry_after or 0.5, 2))
                tasks.put(result.retry_ids)
    cpu = time.process_time() - cpu_started
    backend_cpu = process_cpu(backend) - backend_started if backend else 0.0
    profile_text = ""
    if profile:
        profiles[-1].disable()
        stream = io.StringIO()
        stats = pstats.Stats(*profiles, stream=stream)
        stats.sort_stats("tottime").print_stats(45)
        profile_text = stream.getvalue()
    connections.close_all()
    results.put(
        {
            "statuses": dict(statuses),
            "queries": queries,
            "batches": batches,
            "retried": retried,
            "cpu": cpu,
            "backend_cpu": backend_cpu,
            "profile": profile_text,
        }
    )


def run(*, graph: TimedFakeGraph, cap: int, count: int, args: argparse.Namespace) -> dict:
    account, ids = create_fixture(graph=graph, cap=cap, count=count)
    batches = [ids[i : i + args.batch] for i in range(0, len(ids), args.batch)]
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
    for batch in handed:
        tasks.put(batch)
    processes = [
        context.Process(target=worker, args=(tasks, results, ready, go, args.profile and i == 0))
        for i in range(args.workers)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.acquire()
    server_started = resource.getrusage(resource.RUSAGE_SELF)
    machine_started = machine_busy()
    started = time.time()
    go.set()
    # Every message ends sent (or failed): then the workers may stop.
    done = Message.objects.filter(account=account).exclude(status=Message.Status.QUEUED)
    while done.count() < count:
        time.sleep(0.25)
    for _ in processes:
        tasks.put(STOP)
    outcomes = [results.get() for _ in processes]
    elapsed = time.time() - started
    machine_ended = machine_busy()
    server_ended = resource.getrusage(resource.RUSAGE_SELF)
    for process in processes:
        process.join()

    references = Counter(body.get("biz_opaque_callback_data") for body in graph.sent_messages() if body is not None)
    per_second = Counter(int(t) for t in graph.arrivals)
    seconds = sorted(per_second)
    full = [per_second.get(s, 0) for s in range(seconds[1], seconds[-1])] if len(seconds) > 2 else []
    statuses = Counter(Message.objects.filter(account=account).values_list("status", flat=True).order_by())
    server_cpu = (server_ended.ru_utime + server_ended.ru_stime) - (server_started.ru_utime + server_started.ru_stime)
    busy = machine_ended[0] - machine_started[0]
    total = machine_ended[1] - machine_started[1]
    summary = {
        "cap": cap,
        "messages": count,
        "tasks": len(handed),
        "elapsed": elapsed,
        "overall_rate": count / elapsed,
        "full_second_rate": sum(full) / len(full) if full else float("nan"),
        "busiest_second": max(per_second.values()) if per_second else 0,
        "requests": sum(references.values()),
        "duplicates": sum(1 for n in references.values() if n > 1),
        "lost": count - statuses.get(Message.Status.SENT, 0),
        "queries_per_batch": sum(o["queries"] for o in outcomes) / max(1, sum(o["batches"] for o in outcomes)),
        "retried": sum(o["retried"] for o in outcomes),
        "worker_cpu_ms": sum(o["cpu"] for o in outcomes) * 1000 / count,
        "backend_cpu_ms": sum(o["backend_cpu"] for o in outcomes) * 1000 / count,
        "server_cpu_ms": server_cpu * 1000 / count,
        "machine_busy": busy / total if total else float("nan"),
        "cores": os.cpu_count(),
        "profile": next((o["profile"] for o in outcomes if o["profile"]), ""),
    }
    account.delete()
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages per cap (the issue says 20000)")
    parser.add_argument("--caps", default="80,1000", help="comma-separated msg/s caps")
    parser.add_argument("--workers", type=int, default=2, help="delivery worker processes")
    parser.add_argument("--batch", type=int, default=services.DELIVERY_BATCH_SIZE, help="messages per batch task")
    parser.add_argument(
        "--concurrency", type=int, default=settings.WHATSAPP_SEND_CONCURRENCY, help="sends in flight per worker"
    )
    parser.add_argument("--redeliver", type=float, default=0.05, help="fraction of batch tasks handed out twice")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the fake Graph API takes to answer")
    parser.add_argument("--profile", action="store_true", help="cProfile the first worker (all its threads)")
    args = parser.parse_args()

    settings.DEBUG = False  # no query log: measure the production path
    settings.WHATSAPP_SEND_CONCURRENCY = args.concurrency  # forked workers inherit it
    graph = TimedFakeGraph().start()
    settings.WHATSAPP_GRAPH_URL = graph.base_url
    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(
        f"database {engine}, cache {backend}, {args.workers} worker processes x {args.concurrency} sends in flight, "
        f"batches of {args.batch}, fake Graph API {graph.base_url} answering in {args.latency * 1000:.0f} ms, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    try:
        for cap in (int(c) for c in args.caps.split(",")):
            r = run(graph=graph, cap=cap, count=args.messages, args=args)
            print(
                f"cap {r['cap']:>5}/s  {r['messages']} messages ({r['tasks']} batch tasks) in {r['elapsed']:.1f} s  "
                f"rate {r['full_second_rate']:.0f}/s = {r['full_second_rate'] / cap:.3f} of the cap "
                f"(overall {r['overall_rate']:.0f}/s)  busiest second {r['busiest_second']}  "
                f"requests {r['requests']}  duplicates {r['duplicates']}  lost {r['lost']}  "
                f"given back {r['retried']}  queries/batch {r['queries_per_batch']:.1f}\n"
                f"    CPU per message: workers {r['worker_cpu_ms']:.2f} ms, their PostgreSQL backends "
                f"{r['backend_cpu_ms']:.2f} ms, fake Graph API {r['server_cpu_ms']:.2f} ms; "
                f"machine busy {r['machine_busy'] * 100:.0f}% of {r['cores']} cores"
            )
            if r["profile"]:
                print(r["profile"])
    finally:
        graph.stop()


if __name__ == "__main__":
    main()
