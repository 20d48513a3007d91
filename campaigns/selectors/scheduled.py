"""Reads of HeyDoc's scheduled messages, scoped to what the user may see: admins see
every scheduled message of the account, agents the ones they created. Another
account's (or, for an agent, a colleague's) answers exactly like a missing one."""

from django.db.models import Count, QuerySet

from accounts.models import User
from campaigns.models import ScheduledMessage
from heroshhi.errors import NotFound
from messaging.models import Message

MAX_ID = 2**63 - 1  # a BigAutoField; larger numbers name nothing (and overflow PostgreSQL)


def scheduled_message_scope(*, user: User) -> QuerySet[ScheduledMessage]:
    scheduled = ScheduledMessage.objects.filter(account_id=user.account_id)
    if not user.is_account_admin:
        scheduled = scheduled.filter(created_by=user)
    return scheduled


def scheduled_message_list(*, user: User, status: str | None = None) -> QuerySet[ScheduledMessage]:
    """Latest scheduled time first (the upcoming and the recent before old history);
    the creator is joined, so a page costs one query whatever its size."""
    scheduled = scheduled_message_scope(user=user).select_related("created_by")
    if status:
        scheduled = scheduled.filter(status=status)
    return scheduled.order_by("-scheduled_time", "-id")


def scheduled_message_pending(*, user: User) -> QuerySet[ScheduledMessage]:
    """The pending ones, next due first."""
    return (
        scheduled_message_scope(user=user)
        .filter(status=ScheduledMessage.Status.PENDING)
        .select_related("created_by")
        .order_by("scheduled_time", "id")
    )


def scheduled_message_get(*, user: User, ref) -> ScheduledMessage:
    """The scheduled message with this id (digits), or NotFound."""
    text = str(ref)
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_ID:
        raise NotFound("Scheduled message not found.")
    scheduled = scheduled_message_scope(user=user).select_related("created_by").filter(pk=int(text)).first()
    if scheduled is None:
        raise NotFound("Scheduled message not found.")
    return scheduled


def scheduled_message_delivery(*, scheduled_message: ScheduledMessage) -> dict[str, int]:
    """Its outbox messages counted per status (queued, sent, delivered, read, failed)."""
    counts = dict.fromkeys(Message.Status.values, 0)
    rows = (
        Message.objects.filter(scheduled_message=scheduled_message)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    counts.update(dict(rows))
    return counts


def scheduled_message_next_id(*, scheduled_message: ScheduledMessage) -> int | None:
    """The id of the series' next occurrence, once this one created it."""
    return ScheduledMessage.objects.filter(previous=scheduled_message).values_list("pk", flat=True).first()
