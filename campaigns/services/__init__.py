"""Writes of campaigns, one module per kind: broadcasts, drips, scheduled messages.

Every send goes through messaging's one sending path (outbox Message rows delivered
with messaging.services' claim), so opt-out, window and tenancy rules hold here too.
The due work of all three is driven by one django-q2 schedule (campaigns.tasks.dispatch_due)."""

import time

DISPATCH_FUNC = "campaigns.tasks.dispatch_due"
_dispatcher_seen_until = 0.0  # monotonic time until which this process trusts the schedule exists


def dispatcher_ensure() -> None:
    """Schedules campaigns.tasks.dispatch_due every minute, once per deployment: looked
    for at most hourly per process, created when missing. Called by every path that
    creates due work (and by ``manage.py serve``)."""
    global _dispatcher_seen_until
    if time.monotonic() < _dispatcher_seen_until:
        return
    from django_q.models import Schedule

    if not Schedule.objects.filter(func=DISPATCH_FUNC).exists():
        Schedule.objects.create(
            name="Campaigns: due broadcasts, drip steps and scheduled messages",
            func=DISPATCH_FUNC,
            schedule_type=Schedule.MINUTES,
            minutes=1,
            repeats=-1,
        )
    _dispatcher_seen_until = time.monotonic() + 3600


def dispatch_at(when, *, func: str, key: str, args: tuple = ()) -> None:
    """A one-off run of ``func(*args)`` at ``when`` (django-q2's scheduler looks every
    30 s), so due work starts on time rather than at the next minute's dispatch; the
    every-minute dispatcher remains the safety net. ``key`` names it: scheduling the
    same key twice is a no-op."""
    from django.db import IntegrityError, transaction
    from django_q.models import Schedule

    try:
        with transaction.atomic():
            Schedule.objects.get_or_create(
                name=f"campaigns-{key}"[:100],
                defaults={"func": func, "args": repr(tuple(args)), "schedule_type": Schedule.ONCE, "next_run": when},
            )
    except IntegrityError:  # created meanwhile by a concurrent caller
        pass
