"""The per-number send rate cap, shared by every worker process.

Meta allows a number 80 messages a second by default (up to 1,000 after its upgrade,
20 for coexistence numbers); above that it answers 130429. Each send takes a slot in
the current second's counter in the shared cache (Redis in production, the atomic
database cache otherwise); when the second is full, the sender waits for the next one.
Seconds are the machines' wall clock: workers on several machines need synchronised
clocks (NTP), or their seconds overlap."""

import time

from django.core.cache import cache

# A second's counter is only read during that second; the margin covers slow clocks.
SLOT_TTL = 5


def throughput_wait(*, key: str, per_second: int) -> float:
    """Blocks until a send slot is free; answers the seconds waited.

    A slot is let out only within the second it was counted in: a caller that counts
    at 0.999 and gets its answer at 1.001 would otherwise add one to second 1's quota.
    """
    started = time.monotonic()
    while True:
        second = int(time.time())
        slot = f"wa-throughput:{key}:{second}"
        try:
            # The common case is one round trip: the second's counter already exists.
            taken = cache.incr(slot)
        except ValueError:
            cache.add(slot, 0, timeout=SLOT_TTL)
            try:
                taken = cache.incr(slot)
            except ValueError:  # expired between add and incr: try again
                continue
        if taken <= per_second and int(time.time()) == second:
            return time.monotonic() - started
        # This second is full (or over): wait for the next one.
        pause = second + 1 - time.time()
        if pause > 0:
            time.sleep(pause)
