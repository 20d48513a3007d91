"""Send throughput through the real delivery path, against the fake Graph API.

    .venv/bin/python bench/send_throughput.py                     # 3,000 messages per cap
    .venv/bin/python bench/send_throughput.py --messages 20000    # the issue's figure (cap 80: ~250 s)
    DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/heroshhi REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python bench/send_throughput.py --workers 4     # production shape

Needs a migrated database (make migrate). For each cap (80 and 1,000 msg/s by default) it
creates a workspace with a Cloud API connection to the fake Graph API server (tests/
fake_graph.py, started in this process on 127.0.0.1), queues the messages (set-based
inserts: the fixture, not the path measured), then delivers them with N worker processes
(multiprocessing, forked) that take message ids from a shared queue — standing in for
django-q2 workers, without the broker's own cost — and call
``messaging.services.message_deliver`` for each: the claim, the opt-out check, the
shared throughput cap, the real CloudApiProvider over HTTP, the bookkeeping.

``--redeliver`` hands that fraction of the messages to the workers twice, as django-q2
may (at least once); the claim must keep every message to one request at the fake
server. Printed per cap: the achieved rate in the full seconds of the run ÷ the cap,
the busiest wall-clock second at the server, duplicates (message ids with more than one
request, by ``biz_opaque_callback_data``) and lost messages (not sent).
"""

import argparse
import cProfile
import io
import multiprocessing
import os
import pstats
import random
import sys
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
from messaging.models import Message, WhatsAppConnection  # noqa: E402
from messaging.services import message_deliver, verify_token_digest  # noqa: E402
from tests.fake_graph import FakeGraphServer  # noqa: E402

STOP = None


class TimedFakeGraph(FakeGraphServer):
    """The tests' fake Graph API, also noting when each send arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    def start(self) -> "TimedFakeGraph":
        super().start()
        # http.server writes the headers and the body in two segments; with Nagle's
        # algorithm on, the body waits for the client's delayed ACK (~40 ms a request on
        # Linux). Meta's servers don't behave like that, so the bench turns it off.
        self._server.RequestHandlerClass.disable_nagle_algorithm = True
        return self

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
    return account, [str(m.pk) for m in messages]


def worker(tasks, results, ready, go, profile: bool) -> None:
    """A forked delivery worker: takes message ids until STOP, delivers each."""
    profiler = cProfile.Profile(time.process_time) if profile else None  # CPU, not wall: the machine may be busy
    outcomes: Counter = Counter()
    queries = 0

    def count_query(execute, sql, params, many, context):
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    ready.release()
    go.wait()
    cpu_started = time.process_time()
    if profiler:
        profiler.enable()
    with connection.execute_wrapper(count_query):
        while (message_id := tasks.get()) is not STOP:
            outcomes[message_deliver(message_id=message_id).status] += 1
    if profiler:
        profiler.disable()
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(40)
        outcomes["profile"] = stream.getvalue()  # type: ignore[assignment]
    outcomes["queries"] = queries
    outcomes["cpu"] = time.process_time() - cpu_started  # type: ignore[assignment]
    connections.close_all()
    results.put(dict(outcomes))


def run(
    *, graph: TimedFakeGraph, cap: int, count: int, workers: int, redeliver: float, latency: float, profile: bool
) -> dict:
    account, ids = create_fixture(graph=graph, cap=cap, count=count)
    handed = ids + random.sample(ids, int(len(ids) * redeliver))
    random.shuffle(handed)
    graph.reset()
    graph.state.latency = latency
    graph.arrivals.clear()

    connections.close_all()  # every worker opens its own connection
    context = multiprocessing.get_context("fork")
    tasks, results = context.Queue(), context.Queue()
    ready, go = context.Semaphore(0), context.Event()
    for message_id in handed:
        tasks.put(message_id)
    for _ in range(workers):
        tasks.put(STOP)
    processes = [
        context.Process(target=worker, args=(tasks, results, ready, go, profile and i == 0)) for i in range(workers)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.acquire()
    started = time.time()
    go.set()
    outcomes = [results.get() for _ in processes]
    elapsed = time.time() - started
    for process in processes:
        process.join()

    references = Counter(body.get("biz_opaque_callback_data") for body in graph.sent_messages() if body is not None)
    per_second = Counter(int(t) for t in graph.arrivals)
    seconds = sorted(per_second)
    full = [per_second[s] for s in seconds[1:-1]]  # the first and last seconds are partial
    statuses = Counter(Message.objects.filter(account=account).values_list("status", flat=True).order_by())
    queries = sum(o.pop("queries", 0) for o in outcomes)
    cpu = sum(o.pop("cpu", 0.0) for o in outcomes)
    profile_text = next((o.pop("profile") for o in outcomes if "profile" in o), "")
    summary = {
        "cap": cap,
        "messages": count,
        "tasks": len(handed),
        "workers": workers,
        "elapsed": elapsed,
        "overall_rate": count / elapsed,
        "full_second_rate": sum(full) / len(full) if full else float("nan"),
        "busiest_second": max(per_second.values()) if per_second else 0,
        "requests": sum(references.values()),
        "duplicates": sum(1 for n in references.values() if n > 1),
        "lost": count - statuses.get(Message.Status.SENT, 0),
        "queries_per_task": queries / len(handed),
        "worker_cpu_ms_per_task": cpu * 1000 / len(handed),
        "profile": profile_text,
    }
    account.delete()
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages per cap (the issue says 20000)")
    parser.add_argument("--caps", default="80,1000", help="comma-separated msg/s caps")
    parser.add_argument("--workers", type=int, default=4, help="delivery worker processes")
    parser.add_argument("--redeliver", type=float, default=0.05, help="fraction of messages handed out twice")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the fake Graph API takes to answer")
    parser.add_argument("--profile", action="store_true", help="cProfile the first worker")
    args = parser.parse_args()

    settings.DEBUG = False  # no query log: measure the production path
    graph = TimedFakeGraph().start()
    settings.WHATSAPP_GRAPH_URL = graph.base_url  # forked workers inherit it
    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(
        f"database {engine}, cache {backend}, {args.workers} worker processes, "
        f"fake Graph API {graph.base_url} answering in {args.latency * 1000:.0f} ms"
    )
    try:
        for cap in (int(c) for c in args.caps.split(",")):
            r = run(
                graph=graph,
                cap=cap,
                count=args.messages,
                workers=args.workers,
                redeliver=args.redeliver,
                latency=args.latency,
                profile=args.profile,
            )
            print(
                f"cap {r['cap']:>5}/s  {r['messages']} messages ({r['tasks']} tasks) in {r['elapsed']:.1f} s  "
                f"rate {r['full_second_rate']:.0f}/s = {r['full_second_rate'] / cap:.3f} of the cap "
                f"(overall {r['overall_rate']:.0f}/s)  busiest second {r['busiest_second']}  "
                f"requests {r['requests']}  duplicates {r['duplicates']}  lost {r['lost']}  "
                f"queries/task {r['queries_per_task']:.1f}  worker CPU/task {r['worker_cpu_ms_per_task']:.2f} ms"
            )
            if r["profile"]:
                print(r["profile"])
    finally:
        graph.stop()


if __name__ == "__main__":
    main()
