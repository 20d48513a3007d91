"""django-q2 entry points of messaging: they take ids, load fresh rows, call a service."""

import contextlib
import time
from datetime import timedelta

from django.db import IntegrityError
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import schedule

from messaging import services
from messaging.models import Message
from messaging.providers import ProviderError

SANDBOX_STEP_SECONDS = 1.0
MAX_ATTEMPTS = 5


def deliver_message(message_id: str) -> str:
    """Delivers a queued message; a retryable failure (Meta's throughput limits, a
    network error) is tried again later with backoff, up to MAX_ATTEMPTS attempts.
    Running twice for one message is harmless: the second run finds it claimed or sent."""
    try:
        message = services.message_deliver(message_id=message_id)
    except Message.DoesNotExist:  # deleted with its lead or workspace meanwhile
        return "missing"
    except ProviderError as exc:
        attempts = Message.objects.filter(pk=message_id).values_list("attempts", flat=True).first() or 0
        if attempts >= MAX_ATTEMPTS:
            message = services.message_give_up(
                message_id=message_id, code=exc.code, title=f"Gave up after {attempts} attempts: {exc.title}"
            )
            return message.status
        delay = exc.retry_after or 2**attempts
        # A duplicate of this task may have scheduled the same retry already.
        with contextlib.suppress(IntegrityError):
            schedule(
                "messaging.tasks.deliver_message",
                message_id,
                schedule_type=Schedule.ONCE,
                next_run=timezone.now() + timedelta(seconds=delay),
                name=f"retry-{message_id}-{attempts}",
            )
        return "retry"
    return message.status


def deliver_messages(message_ids: list[str]) -> dict:
    """Delivers a batch of queued messages (services.queue_delivery_batch); what a
    retryable error interrupted is tried again later as one batch."""
    result = services.messages_deliver_batch(message_ids=message_ids)
    retry_batch_later(result, task="messaging.tasks.deliver_messages")
    return result.statuses


def retry_batch_later(result: services.DeliveryBatchResult, *, task: str, args: tuple = ()) -> None:
    """Schedules ``task(*args, ids)`` again for the ids a batch gave back, with backoff
    by the attempts of its first message; messages out of attempts are failed."""
    if not result.retry_ids:
        return
    exc = result.retry_error
    first = result.retry_ids[0]
    attempts = Message.objects.filter(pk=first).values_list("attempts", flat=True).first() or 0
    if attempts >= MAX_ATTEMPTS:
        services.message_give_up(
            message_id=first, code=exc.code, title=f"Gave up after {attempts} attempts: {exc.title}"
        )
        remaining = result.retry_ids[1:]
        delay = 0
    else:
        remaining = result.retry_ids
        delay = exc.retry_after or 2**attempts
    if not remaining:
        return
    with contextlib.suppress(IntegrityError):  # a duplicate of this task scheduled it already
        schedule(
            task,
            *args,
            remaining,
            schedule_type=Schedule.ONCE,
            next_run=timezone.now() + timedelta(seconds=delay),
            name=f"retry-batch-{remaining[0]}-{attempts}",
        )


def requeue_stale_messages() -> int:
    """The sweeper (run it every minute): queues delivery again for messages a dead
    worker left claimed, or whose task was lost. See services.messages_requeue_stale."""
    return services.messages_requeue_stale()


def sandbox_walk_statuses(*message_ids: str) -> None:
    """The sandbox's stand-in for Meta's status webhooks: delivered, then read — for one
    message or a whole batch, each step one set-based write per workspace, with the
    webhook's rules (never backwards)."""
    from messaging.webhooks import StatusUpdate, message_statuses_apply

    by_account: dict = {}
    sent = Message.objects.filter(pk__in=list(message_ids), provider=Message.Provider.SANDBOX, wamid__isnull=False)
    for account_id, wamid in sent.values_list("account_id", "wamid"):
        by_account.setdefault(account_id, []).append(wamid)
    if not by_account:
        return
    for status in (Message.Status.DELIVERED, Message.Status.READ):
        time.sleep(SANDBOX_STEP_SECONDS)
        now = timezone.now()
        for account_id, wamids in by_account.items():
            message_statuses_apply(
                account_id=account_id, updates=[StatusUpdate(wamid=wamid, status=status, at=now) for wamid in wamids]
            )


# --- Meta's webhook (messaging.webhooks) ------------------------------------------------


def process_webhook_event(event_id: int) -> bool:
    """Processes one stored webhook delivery (one too large for the request); running
    twice is harmless: the second run finds it processed."""
    from messaging import webhooks

    return webhooks.webhook_event_process(event_id=event_id)


def process_pending_webhook_events(older_than: float | None = None) -> int:
    """The webhook sweeper: processes stored deliveries nobody processed (processing
    raised, a worker died, a queued task was lost). Scheduled once by the webhook
    whenever it stores an unprocessed event, and again by itself while any remain;
    safe to run on a recurring schedule too. Answers how many it processed."""
    from messaging import webhooks

    result = webhooks.webhook_events_process_pending(older_than=older_than)
    if webhooks.webhook_events_pending(older_than=0).exists():
        # Some remain (too young, failed again, or beyond one run's limit): come back.
        delay = 15 * 60 if result.failed and not result.processed else None
        webhooks.webhook_sweep_schedule(delay=delay, again=True)
    return result.processed
