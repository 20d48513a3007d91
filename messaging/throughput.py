"""The per-number send rate cap, shared by every worker process.

Meta allows a number 80 messages a second by default (up to 1,000 after its upgrade,
20 for coexistence numbers); above that it answers 130429. Each send takes a slot in
the current window's counter in the shared cache (Redis in production, the atomic
database cache otherwise); when the window is full, the sender waits for the next one.

A window is a tenth of a wall-clock second, and a second's cap is spread over its ten
windows (80 a second: 8 a window; 25: 2 or 3, adding up to 25). So no wall-clock second
lets out more than the cap, and no sliding one-second interval more than the cap plus
one window's share (it overlaps at most eleven windows): a steady flow at the cap, not
a second's whole quota in its first milliseconds followed by the next second's. Windows
are the machines' wall clock: workers on several machines need synchronised clocks
(NTP), or their windows overlap.

A batch takes its slots k at a time (``throughput_take``: one ``INCRBY`` for the lot);
a single send takes one (``throughput_wait``). Both count in the same counter, so the
cap holds whatever mix of batches and single sends share a number."""

import time

from django.core.cache import cache

WINDOWS_PER_SECOND = 10
# A window's counter is only read during that window; the margin covers slow clocks.
SLOT_TTL = 5


def current_window() -> int:
    """The number of the wall-clock window now (tenths of a second since the epoch)."""
    return int(time.time() * WINDOWS_PER_SECOND)


def window_end(window: int) -> float:
    """The wall-clock time at which ``window`` is over."""
    return (window + 1) / WINDOWS_PER_SECOND


def window_quota(*, per_second: int, window: int) -> int:
    """The window's share of the second's cap; a second's ten shares add up to it."""
    index = window % WINDOWS_PER_SECOND
    return (index + 1) * per_second // WINDOWS_PER_SECOND - index * per_second // WINDOWS_PER_SECOND


def _slot_key(key: str, window: int) -> str:
    return f"wa-throughput:{key}:{window}"


def throughput_take(*, key: str, per_second: int, count: int) -> tuple[int, int]:
    """Takes up to ``count`` send slots of the current window without waiting;
    answers ``(window, granted)``. ``granted`` may be fewer than asked (the rest of
    the window's share) or 0 (the window is full: try again in the next one).

    Granted slots may be used only while ``current_window() == window``: a request
    let out in the next window would add to that window's share. Asking more than
    the share leaves the counter above it, which only tells later callers in the
    same window that it is full."""
    if count <= 0:
        return current_window(), 0
    while True:
        window = current_window()
        quota = window_quota(per_second=per_second, window=window)
        if quota == 0:  # a cap under ten a second leaves some windows empty
            return window, 0
        slot = _slot_key(key, window)
        try:
            # The common case is one round trip: the window's counter already exists.
            taken = cache.incr(slot, count)
        except ValueError:
            cache.add(slot, 0, timeout=SLOT_TTL)
            try:
                taken = cache.incr(slot, count)
            except ValueError:  # expired between add and incr: try again
                continue
        if current_window() != window:
            # Counted in a window that is over: those slots can't be used any more.
            return window, 0
        before = taken - count
        return window, max(0, min(count, quota - before))


def throughput_wait(*, key: str, per_second: int) -> float:
    """Blocks until a send slot is free; answers the seconds waited.

    A slot is let out only within the window it was counted in: a caller that counts
    at the very end of a window and gets its answer in the next would otherwise add
    one to the next window's share."""
    started = time.monotonic()
    while True:
        window, granted = throughput_take(key=key, per_second=per_second, count=1)
        if granted:
            return time.monotonic() - started
        # This window is full (or over): wait for the next one.
        pause = window_end(window) - time.time()
        if pause > 0:
            time.sleep(pause)
