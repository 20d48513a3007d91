"""The embedded default's rate-limit cache: increments are atomic across
connections and keep the entry's expiry (Django's DatabaseCache does neither)."""

import threading

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection, connections

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "atomic": {"BACKEND": "heroshhi.cache.AtomicDatabaseCache", "LOCATION": "heroshhi_cache_atomic_test"},
}


@pytest.fixture
def atomic_cache(settings, transactional_db):
    settings.CACHES = CACHES
    call_command("createcachetable", "--database", "default")
    cache = caches["atomic"]
    cache.clear()
    yield cache
    cache.clear()


def _expires(key: str):
    with connection.cursor() as cursor:
        cursor.execute("SELECT expires FROM heroshhi_cache_atomic_test WHERE cache_key = %s", [key])
        return cursor.fetchone()[0]


def test_increment_keeps_the_window_expiry(atomic_cache):
    atomic_cache.add("window", 1, timeout=900)
    stored_key = atomic_cache.make_key("window")
    before = _expires(stored_key)

    assert atomic_cache.incr("window") == 2
    assert atomic_cache.incr("window", 5) == 7

    assert atomic_cache.get("window") == 7
    assert _expires(stored_key) == before


def test_increment_of_a_missing_key_fails_like_django(atomic_cache):
    with pytest.raises(ValueError):
        atomic_cache.incr("nothing-here")


def test_concurrent_increments_lose_no_count(atomic_cache):
    atomic_cache.add("hits", 0, timeout=900)
    threads, per_thread = 6, 25
    errors = []

    def hammer():
        try:
            for _ in range(per_thread):
                caches["atomic"].incr("hits")
        except Exception as exc:  # reported below; a thread can't fail the test itself
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    assert atomic_cache.get("hits") == threads * per_thread
