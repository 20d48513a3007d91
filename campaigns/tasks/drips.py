"""django-q2 entry points of drips: they take ids, call a service.

The every-minute ``campaigns.tasks.dispatch_due`` runs the drip runner; these are the
drip's own tasks: a run right after an enrollment whose first step is due at once,
and the delivery of the step messages a run created."""

from campaigns.services import drips as services
from messaging.services import messages_deliver_batch
from messaging.tasks import retry_batch_later


def process_due() -> int:
    """Sends due drip steps now (the same runner as the every-minute dispatch)."""
    return services.enrollments_process_due()


def deliver_step_messages(message_ids: list[str]) -> dict:
    """Delivers a batch of step messages, each at most once (messaging's claim); what
    a retryable error interrupted is tried again later as one batch."""
    result = messages_deliver_batch(message_ids=message_ids)
    retry_batch_later(result, task=services.DELIVER_TASK)
    return result.statuses
