"""Meta's status webhooks against a real server: events per second and answer times.

    DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/heroshhi_t6 \\
    REDIS_URL=redis://127.0.0.1:6379/11 \\
        .venv/bin/python bench/webhook_statuses.py                 # 100,000 messages

    DATABASE_URL=sqlite:////tmp/bench.sqlite3 .venv/bin/python bench/webhook_statuses.py --messages 5000
                                                                   # a quick look (SQLite)

It migrates the configured database, creates a workspace with a Cloud API connection and
100,000 outbound messages with wamids (set-based inserts: the fixture, not the path
measured), vacuums and analyzes the tables (PostgreSQL: fresh statistics, no dead rows of
earlier runs, as autovacuum keeps a production database), starts gunicorn (``--workers``
processes, DEBUG off, the webhook rate limit raised through RATE_LIMIT_WEBHOOK, REDIS_URL
passed on for the rate-limit counters), and
posts signed ``statuses[]`` deliveries from ``--clients`` threads, each over a kept-alive
HTTP connection:

* batches of 1 status: ``--single`` events (sent, delivered, read for a third as many
  messages), one delivery each;
* batches of 100 statuses: sent, delivered and read for every message (300,000 events),
  the batches shuffled within a window so that some `read` arrive before their
  `delivered`, and batches touching the same rows run at the same time.

Printed per phase: events per second over the wall time, p50 / p99 / max answer time of
the deliveries as the client saw them, and the CPU the gunicorn workers and their database
backends spent per delivery (Linux /proc). Afterwards it checks that every message ended
`read` with its three timestamps and that every stored event was processed; then it
deletes what it created (``--keep`` leaves it).
"""

import argparse
import hashlib
import hmac
import http.client
import json
import os
import queue
import random
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heroshhi.settings")
os.environ.setdefault("CACHE_KEY_PREFIX", "heroshhi-bench-webhook")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(64))
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import Account  # noqa: E402
from leads.models import Lead  # noqa: E402
from messaging.models import Message, WebhookEvent, WhatsAppConnection  # noqa: E402
from messaging.services import verify_token_digest  # noqa: E402

PHONE_NUMBER_ID = "bench-webhook-1001"
APP_SECRET = "bench-app-secret"  # noqa: S105 (the bench workspace's, made up)
ACCOUNT_NAME = "Webhook bench"
LEADS = 1000
VERIFY_PATH = "/api/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=bench-verify&hub.challenge=1"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=6_000, help="events sent one per delivery")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker (gthread)")
    parser.add_argument("--clients", type=int, default=4, help="client threads posting deliveries")
    parser.add_argument("--window", type=int, default=30, help="batches shuffled within windows of this many")
    parser.add_argument("--keep", action="store_true", help="leave the workspace and its rows")
    return parser.parse_args()


# --- Fixture ------------------------------------------------------------------------------


def cleanup() -> None:
    accounts = list(Account.objects.filter(name=ACCOUNT_NAME).values_list("pk", flat=True))
    WhatsAppConnection.objects.filter(phone_number_id=PHONE_NUMBER_ID).delete()
    WebhookEvent.objects.filter(payload__contains=f'"{PHONE_NUMBER_ID}"').delete()
    Message.objects.filter(account_id__in=accounts)._raw_delete(Message.objects.db)
    Lead.objects.filter(account_id__in=accounts).delete()
    Account.objects.filter(pk__in=accounts).delete()


def create_fixture(count: int) -> tuple[Account, list[str]]:
    cleanup()
    account = Account.objects.create(name=ACCOUNT_NAME)
    WhatsAppConnection.objects.create(
        account=account,
        phone_number_id=PHONE_NUMBER_ID,
        waba_id="bench-waba",
        access_token="bench-token",  # noqa: S106 (never used: the bench sends nothing)
        app_secret=APP_SECRET,
        verify_token_hash=verify_token_digest("bench-verify"),
    )
    leads = Lead.objects.bulk_create(
        [Lead(account=account, name=f"Bench {i}", phone=f"+9198{i:08d}") for i in range(LEADS)]
    )
    run = uuid.uuid4().hex[:8].upper()
    wamids = [f"wamid.BENCH{run}{i:07d}" for i in range(count)]
    sent_at = timezone.now()
    for start in range(0, count, 10_000):
        Message.objects.bulk_create(
            [
                Message(
                    account=account,
                    lead=leads[i % LEADS],
                    direction=Message.Direction.OUTBOUND,
                    status=Message.Status.SENT,
                    provider=Message.Provider.CLOUD,
                    source=Message.Source.BROADCAST,
                    body="Bench broadcast",
                    wamid=wamids[i],
                    sent_at=sent_at,
                )
                for i in range(start, min(start + 10_000, count))
            ]
        )
    return account, wamids


def vacuum() -> None:
    """Fresh statistics and no dead rows left by earlier runs, as autovacuum would keep
    a production database (it may be off on a test server)."""
    if connection.vendor != "postgresql":
        return
    tables = [model._meta.db_table for model in (Message, WebhookEvent, Lead)]
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {', '.join(tables)}")


# --- Payloads -----------------------------------------------------------------------------


def delivery(items: list[tuple[str, str]], at: int) -> bytes:
    """A Meta statuses[] delivery, as the fixtures in messaging/tests/fixtures/ look."""
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "bench-waba",
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": "15550101001", "phone_number_id": PHONE_NUMBER_ID},
                            "statuses": [
                                {
                                    "id": wamid,
                                    "status": status,
                                    "timestamp": str(at + {"sent": 0, "delivered": 2, "read": 30}[status]),
                                    "recipient_id": "919800000000",
                                    **(
                                        {
                                            "conversation": {
                                                "id": "6ceb9d929c9bdc4f90e967a32f8639b4",
                                                "origin": {"type": "marketing"},
                                            },
                                            "pricing": {
                                                "billable": True,
                                                "pricing_model": "PMP",
                                                "category": "marketing",
                                                "type": "regular",
                                            },
                                        }
                                        if status == "sent"
                                        else {}
                                    ),
                                }
                                for wamid, status in items
                            ],
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }
    return json.dumps(payload).encode()


def signed(body: bytes) -> tuple[bytes, str]:
    return body, "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


def batches_for(wamids: list[str], size: int, window: int, seed: int) -> list[tuple[int, bytes, str]]:
    """(events, body, signature): sent, delivered and read batches for each block of
    ``size`` messages, shuffled within windows (out of order, overlapping rows)."""
    at = int(time.time()) - 3600
    batches = []
    for start in range(0, len(wamids), size):
        block = wamids[start : start + size]
        for status in ("sent", "delivered", "read"):
            batches.append((len(block), *signed(delivery([(w, status) for w in block], at))))
    rng = random.Random(seed)
    shuffled = []
    for start in range(0, len(batches), window):
        part = batches[start : start + window]
        rng.shuffle(part)
        shuffled.extend(part)
    return shuffled


# --- Server and clients -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return settings.DATABASE_URL


def start_server(workers: int, threads: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DEBUG": "0",
        "DJANGO_ENV": "development",
        "RATE_LIMIT_WEBHOOK": "100000000/15m",
        "DB_CONN_MAX_AGE": "600",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "heroshhi.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--keep-alive",
        "30",
        "--backlog",
        "2048",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env)  # noqa: S603 (our own command line)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("gunicorn exited early")
        try:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            probe.request("GET", "/healthz")
            if probe.getresponse().status == 200:
                probe.close()
                # Every worker loads the app and connects to the database lazily: warm
                # them all up (the verify handshake reads the database).
                for _ in range(workers * 8):
                    probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    probe.request("GET", VERIFY_PATH)
                    probe.getresponse().read()
                    probe.close()
                return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("gunicorn did not answer within 60 s")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids(server: subprocess.Popen) -> tuple[list[int], list[int]]:
    """The gunicorn workers, and the database backends serving them."""
    pids, backends = [], []
    for child in Path("/proc").iterdir():
        if child.name.isdigit():
            try:
                if int((child / "stat").read_text().rsplit(")", 1)[1].split()[1]) == server.pid:
                    pids.append(int(child.name))
            except OSError:
                continue
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            backends = [row[0] for row in cursor.fetchall()]
    return pids, backends


def cpu_of(pids: list[int]) -> float:
    return sum(_cpu_seconds(pid) for pid in pids)


def post_all(port: int, work: list[tuple[int, bytes, str]], clients: int) -> tuple[float, list[float], int]:
    """Posts every delivery from ``clients`` threads; answers (wall seconds, answer
    times in ms, failures)."""
    jobs: queue.Queue = queue.Queue()
    for item in work:
        jobs.put(item)
    timings: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        barrier.wait()
        while True:
            try:
                _events, body, signature = jobs.get_nowait()
            except queue.Empty:
                break
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
            started = time.perf_counter()
            try:
                conn.request("POST", "/api/webhooks/whatsapp", body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                with lock:
                    failures.append(repr(exc))
                continue
            mine.append((time.perf_counter() - started) * 1000)
            if response.status != 200 or b'"processed": true' not in answer:
                with lock:
                    failures.append(f"{response.status} {answer[:200]!r}")
        conn.close()
        with lock:
            timings.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        print(f"  {len(failures)} failed deliveries, e.g. {failures[:3]}")
    return wall, timings, len(failures)


def report(
    label: str, events: int, deliveries: int, wall: float, timings: list[float], cpu: tuple[float, float]
) -> dict:
    timings = sorted(timings)
    p50 = statistics.median(timings)
    p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
    rate = events / wall
    print(
        f"{label:<22} {events:>8,} events in {deliveries:>6,} deliveries  {wall:7.1f} s  "
        f"{rate:8,.0f} events/s  answer p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  max {timings[-1]:7.1f} ms  "
        f"CPU per delivery: web {cpu[0] * 1000 / deliveries:4.1f} ms, database {cpu[1] * 1000 / deliveries:4.1f} ms"
    )
    return {"rate": rate, "p50": p50, "p99": p99}


def main() -> None:
    args = parse_args()
    engine = connection.settings_dict["ENGINE"].rsplit(".", 1)[-1]
    cache = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(
        f"database {engine}, cache {cache}, gunicorn {args.workers} workers x {args.threads} threads, "
        f"{args.clients} client threads, {os.cpu_count()} CPUs"
    )
    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)

    started = time.perf_counter()
    account, wamids = create_fixture(args.messages)
    vacuum()
    print(f"fixture: {len(wamids):,} outbound messages in {time.perf_counter() - started:.1f} s")

    single_messages = min(len(wamids), max(1, args.single // 3))
    singles = batches_for(wamids[-single_messages:], 1, args.window * 3, seed=1)
    hundreds = batches_for(wamids, args.batch, args.window, seed=2)

    process, port = start_server(args.workers, args.threads)
    posted_from = timezone.now()
    failed = 0
    try:
        for label, work in (("batches of 1", singles), (f"batches of {args.batch}", hundreds)):
            workers, backends = server_pids(process)
            before = cpu_of(workers), cpu_of(backends)
            wall, timings, failures = post_all(port, work, args.clients)
            failed += failures
            cpu = cpu_of(workers) - before[0], cpu_of(backends) - before[1]
            report(label, sum(n for n, *_ in work), len(work), wall, timings, cpu)
    finally:
        process.terminate()
        process.wait(timeout=30)

    read = Message.objects.filter(
        account=account,
        status=Message.Status.READ,
        sent_at__isnull=False,
        delivered_at__isnull=False,
        read_at__isnull=False,
    ).count()
    pending = WebhookEvent.objects.filter(received_at__gte=posted_from, processed_at__isnull=True).count()
    print(f"check: {read:,} of {len(wamids):,} messages read with all three timestamps; {pending} events unprocessed")
    if not args.keep:
        cleanup()
        vacuum()
    if read != len(wamids) or pending or failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
