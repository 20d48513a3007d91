"""Cost of the rate-limit check every API request pays, on the configured cache.

    .venv/bin/python bench/ratelimit_check.py                       # SQLite + database cache
    DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/heroshhi \
        .venv/bin/python bench/ratelimit_check.py                   # PostgreSQL + database cache
    REDIS_URL=redis://127.0.0.1:6379/14 .venv/bin/python bench/ratelimit_check.py   # Redis

Needs a migrated database (make migrate). Prints the median and p95 per check, for one
client hammering one key (the worst case: every increment hits the same row) and for
many clients (one key each).
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heroshhi.settings")
os.environ.setdefault("CACHE_KEY_PREFIX", "heroshhi-bench")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import AnonymousUser  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import RequestFactory  # noqa: E402

from heroshhi.ratelimit import rate_limit_hit  # noqa: E402

CHECKS = 2000


def measure(ips) -> list[float]:
    factory = RequestFactory()
    timings = []
    for i in range(CHECKS):
        request = factory.get("/api/auth/me", REMOTE_ADDR=ips[i % len(ips)])
        request.user = AnonymousUser()
        started = time.perf_counter()
        rate_limit_hit(request, "standard")
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def report(label: str, timings: list[float]) -> None:
    timings.sort()
    p95 = timings[int(len(timings) * 0.95)]
    print(f"{label:<28} median {statistics.median(timings):.3f} ms   p95 {p95:.3f} ms   ({len(timings)} checks)")


def main() -> None:
    call_command("createcachetable")
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "1000000/15m"}
    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(f"cache {backend}, database {engine}")
    report("one client (one key)", measure(["192.0.2.1"]))
    report("500 clients (500 keys)", measure([f"10.0.{i // 250}.{i % 250}" for i in range(500)]))


if __name__ == "__main__":
    main()
