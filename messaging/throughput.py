"""The per-number send rate cap, shared by every worker process.

Meta allows a number 80 messages a second by default (up to 1,000 after its upgrade,
20 for coexistence numbers); above that it answers 130429. Each send takes a slot in
the current second's counter in the shared cache (Redis in production); when the
second is full, the sender waits for the next one."""

import time

from django.core.cache import cache


def throughput_wait(*, key: str, per_second: int) -> float:
    """Blocks until a send slot is free; answers the seconds waited."""
    waited = 0.0
    while True:
        now = time.time()
        second = int(now)
        slot = f"wa-throughput:{key}:{second}"
        cache.add(slot, 0, timeout=5)
        try:
            taken = cache.incr(slot)
        except ValueError:  # expired between add and incr: take the next second
            continue
        if taken <= per_second:
            return waited
        pause = max(0.001, second + 1 - time.time())
        time.sleep(pause)
        waited += pause
