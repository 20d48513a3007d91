"""django-q2 entry points of scheduled messages: they take ids, call a service."""

from campaigns.services import scheduled
from messaging.services import messages_deliver_batch
from messaging.tasks import retry_batch_later


def send_due(scheduled_message_id: int) -> str:
    """The one-off run at an occurrence's time (campaigns.services.dispatch_at).
    Harmless when it is not due, already sent, cancelled or deleted: it does nothing."""
    result = scheduled.scheduled_message_dispatch(scheduled_message_id=int(scheduled_message_id))
    return "nothing to do" if result is None else f"{result.status}: {result.queued} queued"


def deliver(scheduled_message_id: int, message_ids: list[str]) -> dict:
    """Delivers a batch of an occurrence's outbox messages (each at most once, by
    messaging's claim); what a retryable error interrupted is tried again later."""
    result = messages_deliver_batch(message_ids=message_ids)
    retry_batch_later(result, task=scheduled.DELIVER_FUNC, args=(scheduled_message_id,))
    return result.statuses
