"""django-q2 entry points of messaging: they take ids, load fresh rows, call a service."""

import time
from datetime import timedelta

from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import schedule

from messaging import services
from messaging.models import Message
from messaging.providers import ProviderError

SANDBOX_STEP_SECONDS = 1.0


def deliver_message(message_id: str) -> str:
    """Delivers a queued message; a retryable failure (Meta's throughput limits, a
    network error) is tried again later, up to 5 attempts."""
    try:
        message = services.message_deliver(message_id=message_id)
    except ProviderError as exc:
        message = Message.objects.get(pk=message_id)
        if message.attempts >= 5:
            services._fail(message, exc.code, f"Gave up after {message.attempts} attempts: {exc.title}")
            return "failed"
        delay = exc.retry_after or 2**message.attempts
        schedule(
            "messaging.tasks.deliver_message",
            message_id,
            schedule_type=Schedule.ONCE,
            next_run=timezone.now() + timedelta(seconds=delay),
            name=f"retry-{message_id}-{message.attempts}",
        )
        return "retry"
    return message.status


def sandbox_walk_statuses(message_id: str) -> None:
    """The sandbox's stand-in for Meta's status webhooks: delivered, then read."""
    message = Message.objects.filter(pk=message_id, provider=Message.Provider.SANDBOX).first()
    if message is None or not message.wamid:
        return
    for status in (Message.Status.DELIVERED, Message.Status.READ):
        time.sleep(SANDBOX_STEP_SECONDS)
        services.message_status_apply(wamid=message.wamid, status=status, at=timezone.now())
