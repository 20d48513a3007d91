"""Render time of the dashboard's leads page for an account of N leads (default 100,000).

    .venv/bin/python bench/leads_page.py                             # SQLite
    DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/heroshhi_bench_page \
        .venv/bin/python bench/leads_page.py                         # PostgreSQL

Needs a migrated database (`manage.py migrate` with the same DATABASE_URL). Creates a
fresh account with an admin, an agent and N leads (set-based inserts: the fixture, not
what is measured; a quarter assigned to the agent, a third tagged, a tenth with a recent
message), then renders the leads page through Django's full request path (the test
client: middleware, session, the view, the template) as the admin and as the agent,
unfiltered and with the filters staff use, and prints the median, p95 and max render
time and the number of SQL statements of each. The bench account is deleted afterwards.
"""

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heroshhi.settings")
os.environ.setdefault("CACHE_KEY_PREFIX", "heroshhi-bench")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import Account, User  # noqa: E402
from leads.models import Lead, Tag  # noqa: E402

FIRST = ["Asha", "Ravi", "Priya", "Arjun", "Meera", "Vikram", "Sara", "Kabir", "Nisha", "Rohan"]
LAST = ["Rao", "Sharma", "Iyer", "Patel", "Khan", "Singh", "Das", "Menon", "Gupta", "Nair"]
SOURCES = ["Website Form", "Expo 2026", "Facebook Ad", "Referral", "Walk-in"]


def build(leads: int, seed: int) -> tuple[Account, User, User]:
    rng = random.Random(seed)
    account = Account.objects.create(name=f"Bench page {uuid.uuid4().hex[:8]}", time_zone="Asia/Kolkata")
    suffix = uuid.uuid4().hex[:8]
    admin = User.objects.create_user(f"admin-{suffix}@bench.local", "x", account=account, role=User.Role.ADMIN)
    agent = User.objects.create_user(f"agent-{suffix}@bench.local", "x", account=account, role=User.Role.AGENT)
    tags = Tag.objects.bulk_create([Tag(account=account, name=f"tag-{n}", color="#2563eb") for n in range(10)])
    now = timezone.now()
    statuses = [choice for choice, _ in Lead.Status.choices]
    segments = [choice for choice, _ in Lead.Segment.choices]
    start = rng.randrange(10**8)
    batch, links = [], []
    link = Lead.tags.through
    for i in range(leads):
        created = now - timedelta(minutes=rng.randrange(60 * 24 * 365))
        talked = rng.random() < 0.1
        lead = Lead(
            account=account,
            name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
            phone=f"+9198{(start + i) % 10**8:08d}",
            email=f"lead{i}@example.com" if rng.random() < 0.7 else "",
            source=rng.choice(SOURCES),
            status=rng.choice(statuses),
            segment=rng.choice(segments),
            assigned_to=agent if rng.random() < 0.25 else None,
            is_opted_out=rng.random() < 0.03,
            last_message_at=now - timedelta(minutes=rng.randrange(60 * 24 * 30)) if talked else None,
        )
        lead.created_at = created
        batch.append(lead)
        if rng.random() < 0.33:
            links.append((lead, rng.choice(tags)))
        if len(batch) == 5000:
            Lead.objects.bulk_create(batch)
            batch = []
    Lead.objects.bulk_create(batch)
    for start_at in range(0, len(links), 5000):
        chunk = links[start_at : start_at + 5000]
        link.objects.bulk_create([link(lead_id=lead.pk, tag_id=tag.pk) for lead, tag in chunk])
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE leads_lead")
            cursor.execute(f"ANALYZE {link._meta.db_table}")
    return account, admin, agent


def measure(client: Client, url: str, repeat: int) -> tuple[list[float], int]:
    client.get(url)  # warm: templates compiled, connections open
    times = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            sys.exit(f"{url} answered {response.status_code}")
    return times, len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30, help="renders per page measured")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    started = time.perf_counter()
    account, admin, agent = build(args.leads, args.seed)
    print(
        f"database {connection.vendor}, {args.leads:,} leads created in {time.perf_counter() - started:.1f} s, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    tag = Tag.objects.filter(account=account).first()
    pages = [
        ("admin", admin, "/leads"),
        ("admin", admin, "/leads?page=200"),
        ("admin", admin, "/leads?status=qualified&segment=hot"),
        ("admin", admin, f"/leads?tag={tag.pk}"),
        ("admin", admin, "/leads?search=Meera"),
        ("admin", admin, "/leads?search=98000"),
        ("admin", admin, "/leads?sort=name"),
        ("agent", agent, "/leads"),
    ]
    try:
        print(f"{'user':<6} {'page':<42} {'median':>8} {'p95':>8} {'max':>8} {'queries':>8}")
        for role, user, url in pages:
            client = Client()
            client.force_login(user)
            times, queries = measure(client, url, args.repeat)
            p95 = statistics.quantiles(times, n=20)[-1]
            print(
                f"{role:<6} {url:<42} {statistics.median(times):>6.1f}ms {p95:>6.1f}ms {max(times):>6.1f}ms "
                f"{queries:>8}"
            )
    finally:
        Lead.objects.filter(account=account).delete()
        account.delete()


if __name__ == "__main__":
    main()
