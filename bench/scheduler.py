"""N scheduled messages (HeyDoc's) due at the same moment, sent by real django-q2
clusters against the fake Graph API: how late each one reaches WhatsApp (issue 5, item 6).

    DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/heroshhi REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python bench/scheduler.py                      # 10,000 messages, cap 1,000 msg/s
    ... bench/scheduler.py --messages 1000 --cap 80              # smaller

PostgreSQL and a Redis broker only, as bench/broadcast.py (whose helpers it uses); the
queue of this REDIS_URL is purged before and after.

The fixture: a workspace with a Cloud API connection of ``throughput_cap`` ``--cap``
(1,000 msg/s by default, so the cap-limited drain is short: 10 s for 10,000), N leads who
wrote an hour ago (a text may go), and N scheduled messages of one recipient each, all
due at the same second T (``--ahead`` seconds after the fixture is made). The first is
created with the real service, ``campaigns.services.scheduled.scheduled_message_create``
(the row and the one-off django-q2 run of the dispatcher at T, which every occurrence due
in that second shares); the service has no bulk path, so the other N-1 are inserted
set-based as copies of it, with the same fields.

Then ``--clusters`` real ``manage.py qcluster`` processes (2 by default, ``--q-workers``
worker process each) run as in production: django-q2's scheduler (every 30 s in each
cluster's guard loop) turns the due schedule into a ``campaigns.tasks.scheduled.dispatch_due``
task, which dispatches the occurrences set-based (500 per transaction: claim, outbox rows)
and queues ``messaging.tasks.deliver_messages`` tasks of 100 messages across occurrences;
the every-minute ``campaigns.tasks.dispatch_due`` safety net runs too. The fake Graph API answers
130429 above the cap and fails ``--fail-rate`` of the sends with HTTP 500 (retried).

Printed: the lateness of each message's send (arrival of its accepted request at the
fake server minus its ``scheduled_time``) at p50, p99 and max; the first send's
lateness (mostly the phase of the 30 s scheduler tick); the spread from first to last
send, next to the cap-limited drain time N / cap; 130429 and 5xx answers; duplicates
(more than one accepted request for a message, by ``biz_opaque_callback_data``; must
be 0) and lost (scheduled messages without an accepted request; must be 0; unknown
when the run stopped at ``--timeout`` seconds after the due time), and the load average.
"""

import argparse
import logging
import os
import statistics
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heroshhi.settings")
os.environ.setdefault("CACHE_KEY_PREFIX", "heroshhi-bench")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402
from django_q.models import Schedule  # noqa: E402

from bench.broadcast import (  # noqa: E402
    Clusters,
    load,
    machine_busy,
    machine_line,
    purge_broker,
    require_production_shape,
    send_figures,
    sends_of,
    vacuum,
    workspace_create,
    workspace_delete,
)
from campaigns.models import ScheduledMessage  # noqa: E402
from campaigns.services import scheduled as scheduled_services  # noqa: E402
from leads.models import Lead  # noqa: E402
from messaging.models import Message  # noqa: E402
from tests.fake_graph import FakeGraphServer  # noqa: E402

TEXT = "Hi {{first_name}}, a reminder: your appointment is tomorrow at 10:00."


def phone(i: int) -> str:
    return f"9198{i:08d}"


def fixture(*, account, admin, count: int, ahead: float):
    """N leads and N scheduled messages due at one second T; answers T and the ids."""
    wrote = timezone.now() - timedelta(hours=1)
    Lead.objects.bulk_create(
        (
            Lead(account=account, name=f"Bench lead {i}", phone=f"+{phone(i)}", last_inbound_at=wrote)
            for i in range(count)
        ),
        batch_size=5000,
    )
    vacuum(Lead, Message, ScheduledMessage)
    due = (timezone.now() + timedelta(seconds=ahead)).replace(microsecond=0)
    first = scheduled_services.scheduled_message_create(
        user=admin, recipients=[phone(0)], scheduled_time=due, message=TEXT
    )
    copies = ScheduledMessage.objects.bulk_create(
        (
            ScheduledMessage(
                account=account,
                message=first.message,
                recipients=[phone(i)],
                scheduled_time=first.scheduled_time,
                series_start=first.series_start,
                recurrence=first.recurrence,
                created_by=admin,
            )
            for i in range(1, count)
        ),
        batch_size=5000,
    )
    return due, [first.pk, *(copy.pk for copy in copies)]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def cleanup(account, ids: list[int]) -> None:
    Schedule.objects.filter(func=scheduled_services.DISPATCH_DUE_FUNC).delete()
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Message._meta.db_table} WHERE account_id = %s", [account.pk])  # noqa: S608
        cursor.execute(f"DELETE FROM {ScheduledMessage._meta.db_table} WHERE account_id = %s", [account.pk])  # noqa: S608
    workspace_delete(account)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="scheduled messages due at the same second")
    parser.add_argument("--cap", type=int, default=1000, help="the number's throughput cap, msg/s")
    parser.add_argument("--ahead", type=float, default=40, help="seconds from the fixture to the due time")
    parser.add_argument("--clusters", type=int, default=2, help="qcluster processes")
    parser.add_argument("--q-workers", type=int, default=1, help="worker processes of each qcluster (Q_WORKERS)")
    parser.add_argument("--fail-rate", type=float, default=0.01, help="fraction of sends answered HTTP 500")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fake server's random failures")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds after the due time to give up waiting")
    parser.add_argument("--keep", action="store_true", help="keep the fixture workspace")
    args = parser.parse_args()

    require_production_shape()
    logging.getLogger("django-q").setLevel(logging.WARNING)
    graph = FakeGraphServer(fail_rate=args.fail_rate, seed=args.seed).start()
    print(machine_line(args) + f", fake Graph API failing {args.fail_rate:.1%} of sends with HTTP 500", flush=True)
    account, admin, whatsapp = workspace_create(graph=graph, cap=args.cap, label="scheduler")
    ids: list[int] = []
    clusters = None
    try:
        purge_broker()
        made = time.monotonic()
        due, ids = fixture(account=account, admin=admin, count=args.messages, ahead=args.ahead)
        print(
            f"{len(ids)} scheduled messages due at {due:%H:%M:%S} UTC, fixture made in {time.monotonic() - made:.1f} s",
            flush=True,
        )
        clusters = Clusters(count=args.clusters, q_workers=args.q_workers, graph_url=graph.base_url)
        clusters.wait_ready()
        busy_before = machine_busy()
        deadline = due.timestamp() + args.timeout

        def accepted() -> int:
            sends = graph.send_requests()
            return len({(r.json or {}).get("biz_opaque_callback_data") for r in sends if r.status == 200})

        while accepted() < len(ids) and time.time() < deadline:
            time.sleep(0.5)
        finished = time.time()
        load_at_end = load()
        busy_after = machine_busy()
        time.sleep(10)  # time for a stray duplicate (a task run twice, the safety net)
        clusters.stop()
        purge_broker()

        requests = sends_of(graph, whatsapp.phone_number_id)
        figures = send_figures(requests)
        due_times = dict(
            Message.objects.filter(account=account, scheduled_message__isnull=False).values_list(
                "pk", "scheduled_message__scheduled_time"
            )
        )
        first_accepted: dict[str, float] = {}
        for r in requests:
            reference = (r.json or {}).get("biz_opaque_callback_data")
            if r.status == 200 and reference not in first_accepted:
                first_accepted[reference] = r.at
        lateness = []
        for pk, scheduled_time in due_times.items():
            at = first_accepted.get(str(pk))
            if at is not None:
                lateness.append(at - scheduled_time.timestamp())
        unsent = len(ids) - len(lateness)
        # Lost: never sent. A run that hit --timeout can't tell lost from late.
        lost = unsent if finished < deadline else f"unknown ({unsent} unsent at the {args.timeout:.0f} s timeout)"
        statuses = Counter(ScheduledMessage.objects.filter(pk__in=ids).values_list("status", flat=True).order_by())
        busy = busy_after[0] - busy_before[0]
        total = busy_after[1] - busy_before[1]
        sent_at = sorted(first_accepted.values())
        spread = sent_at[-1] - sent_at[0] if sent_at else float("nan")
        print(
            f"cap {args.cap}/s: {len(lateness)} of {len(ids)} sent, lateness p50 {percentile(lateness, 50):.1f} s  "
            f"p99 {percentile(lateness, 99):.1f} s  max {max(lateness, default=float('nan')):.1f} s  "
            f"mean {statistics.fmean(lateness) if lateness else float('nan'):.1f} s\n"
            f"    first send {min(lateness, default=float('nan')):.1f} s after the due time; first to last send "
            f"{spread:.1f} s (cap-limited drain {len(ids) / args.cap:.1f} s); done {finished - due.timestamp():.1f} s "
            f"after the due time\n"
            f"    requests {figures['requests']}  accepted {figures['accepted']}  busiest second "
            f"{figures['busiest_accepted']} accepted  130429 answers {figures['throttled']}  "
            f"5xx answers {figures['server_errors']}  duplicates {figures['duplicates']}  lost {lost}\n"
            f"    scheduled messages {dict(statuses)}  machine CPU busy {busy / total if total else float('nan'):.0%}  "
            f"load average {load_at_end} at the end  worker tracebacks {clusters.errors()}",
            flush=True,
        )
    finally:
        if clusters is not None:
            clusters.stop()
        graph.stop()
        if not args.keep:
            cleanup(account, ids)


if __name__ == "__main__":
    main()
