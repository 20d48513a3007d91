"""The per-number send rate cap, shared by every worker process.

Meta allows a number 80 messages a second by default (up to 1,000 after its upgrade,
20 for coexistence numbers); above that it answers 130429. Each send takes a slot in
the current second's counter in the shared cache (Redis in production, the atomic
database cache otherwise); when the second is full, the sender waits for the next one.
Seconds are the machines' wall clock: workers on several machines need synchronised
clocks (NTP), or their seconds overlap.

A batch takes its slots k at a time (``throughput_take``: one ``INCRBY`` for the lot);
a single send takes one (``throughput_wait``). Both count in the same counter, so the
cap holds whatever mix of batches and single sends share a number."""

import time

from django.core.cache import cache

# A second's counter is only read during that second; the margin covers slow clocks.
SLOT_TTL = 5


def _slot_key(key: str, second: int) -> str:
    return f"wa-throughput:{key}:{second}"


def throughput_take(*, key: str, per_second: int, count: int) -> tuple[int, int]:
    """Takes up to ``count`` send slots of the current wall-clock second without
    waiting; answers ``(second, granted)``. ``granted`` may be fewer than asked (the
    rest of the second's quota) or 0 (the second is full: try again in the next one).

    Granted slots may be used only while ``int(time.time()) == second``: a request
    let out in the next second would add to that second's quota. Asking more than
    the quota leaves the counter above the cap, which only tells later callers in the
    same second that it is full."""
    if count <= 0:
        return int(time.time()), 0
    while True:
        second = int(time.time())
        slot = _slot_key(key, second)
        try:
            # The common case is one round trip: the second's counter already exists.
            taken = cache.incr(slot, count)
        except ValueError:
            cache.add(slot, 0, timeout=SLOT_TTL)
            try:
                taken = cache.incr(slot, count)
            except ValueError:  # expired between add and incr: try again
                continue
        if int(time.time()) != second:
            # Counted in a second that is over: those slots can't be used any more.
            return second, 0
        before = taken - count
        return second, max(0, min(count, per_second - before))


def throughput_wait(*, key: str, per_second: int) -> float:
    """Blocks until a send slot is free; answers the seconds waited.

    A slot is let out only within the second it was counted in: a caller that counts
    at 0.999 and gets its answer at 1.001 would otherwise add one to second 1's quota.
    """
    started = time.monotonic()
    while True:
        second, granted = throughput_take(key=key, per_second=per_second, count=1)
        if granted:
            return time.monotonic() - started
        # This second is full (or over): wait for the next one.
        pause = second + 1 - time.time()
        if pause > 0:
            time.sleep(pause)
