"""django-q2 entry points of broadcasts. Each may run twice (django-q2 delivers at least
once): starting is a conditional update, each message is claimed before it is sent."""

from campaigns.services import broadcasts as services
from messaging.services import messages_deliver_batch
from messaging.tasks import retry_batch_later


def start(broadcast_id: str) -> bool:
    """The one-off schedule at a broadcast's ``scheduledAt`` (the minute dispatcher is
    the safety net): starts it unless it started, was cancelled, or isn't due."""
    return services.broadcast_start(broadcast_id=broadcast_id)


def send_batch(broadcast_id: str, message_ids: list[str]) -> dict:
    """Delivers a batch of the broadcast's messages at the number's throughput; what a
    retryable error (Meta's 130429, a network error) interrupted comes back later as
    one batch. Then completes the broadcast if nothing of it is queued any more."""
    result = messages_deliver_batch(message_ids=message_ids)
    retry_batch_later(result, task=services.SEND_BATCH_TASK, args=(broadcast_id,))
    services.broadcast_complete_if_done(broadcast_id=broadcast_id)
    return result.statuses
