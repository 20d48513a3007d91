"""Writes of messaging: the one sending service, delivery, status changes, templates
and the WhatsApp connection.

Every path that sends — single send, bulk, broadcast, drip step, scheduled message,
HeyDoc send_message, admin action — goes through ``message_send`` (checks) and
``message_deliver`` (the provider call). Opt-out is checked in both: when the message
is created and again right before the provider is called.
"""

import hashlib
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Account, User
from heroshhi.errors import DomainError, ValidationFailed
from heroshhi.text import clean_text
from leads.models import Lead
from messaging.models import Message, Template, WhatsAppConnection
from messaging.providers import CloudApiProvider, ProviderError, provider_for, provider_for_connection
from messaging.throughput import throughput_wait

logger = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)


class OptOutBlocked(DomainError):
    status_code = 400
    code = "OPT_OUT_BLOCKED"
    default_message = "Cannot send message - contact has opted out"


class WindowClosed(DomainError):
    status_code = 400
    code = "WINDOW_CLOSED"
    default_message = (
        "The 24-hour customer service window is closed: the contact has not written in the last "
        "24 hours. Send an approved template instead."
    )


class TemplateUnavailable(DomainError):
    status_code = 400
    code = "TEMPLATE_NOT_APPROVED"
    default_message = "This template does not exist or is not approved."


class SendFailed(DomainError):
    status_code = 400
    code = "SEND_FAILED"
    default_message = "WhatsApp did not accept the message."


# Meta's codes with an outcome of their own.
META_WINDOW_CLOSED = "131047"
META_MARKETING_STOPPED = "131050"
META_TOKEN_INVALID = "190"  # noqa: S105 (an error code, not a secret)


@dataclass(frozen=True)
class TemplateRef:
    name: str
    language: str = ""
    params: list = field(default_factory=list)  # body parameters, in order


# --- Checks and creation ----------------------------------------------------------------


def window_open(lead: Lead, *, now: datetime | None = None) -> bool:
    """The 24-hour customer service window: open while the contact's last message is
    less than 24 hours old."""
    return bool(lead.last_inbound_at and (now or timezone.now()) - lead.last_inbound_at < WINDOW)


def _template_named(account: Account, ref: TemplateRef) -> Template | None:
    templates = Template.objects.filter(account=account, name=ref.name)
    if ref.language:
        templates = templates.filter(language=ref.language)
    return templates.order_by("language").first()


def template_for_send(*, account: Account, ref: TemplateRef) -> Template:
    template = _template_named(account, ref)
    if (
        template is None
        and not WhatsAppConnection.objects.filter(account=account).exists()
        and not Template.objects.filter(account=account, is_sandbox=True).exists()
    ):
        # A sandbox workspace gets the sandbox's templates on first use, so a template
        # send works offline before anyone has listed the templates.
        templates_sync(account=account)
        template = _template_named(account, ref)
    if template is None:
        raise TemplateUnavailable(f"No template named {ref.name!r}{' in ' + ref.language if ref.language else ''}.")
    if template.status != Template.Status.APPROVED:
        raise TemplateUnavailable(f"Template {ref.name!r} is {template.status}, not APPROVED.")
    return template


def _template_components(params: list) -> list:
    if not params:
        return []
    return [{"type": "body", "parameters": [{"type": "text", "text": str(value)} for value in params]}]


def _render_template_body(template: Template, params: list) -> str:
    """The template's body text with its parameters, for the conversation view."""
    body = next((c.get("text", "") for c in template.components if str(c.get("type", "")).upper() == "BODY"), "")
    for index, value in enumerate(params, start=1):
        body = body.replace(f"{{{{{index}}}}}", str(value))
    return body or f"[template {template.name}]"


def message_send(
    *,
    account: Account,
    lead: Lead,
    text: str = "",
    template: TemplateRef | None = None,
    user: User | None = None,
    source: str = Message.Source.API,
    deliver_now: bool = True,
) -> Message:
    """Checks and records an outbound message, then delivers it (now, or through the
    worker when ``deliver_now`` is False). Raises OptOutBlocked, WindowClosed or
    TemplateUnavailable before anything is recorded."""
    text = clean_text(text)  # stored free text is plain text, like every other field
    if bool(text) == bool(template):
        raise ValidationFailed("Send either a text or a template.", errors={"message": ["Give a text or a template."]})
    with transaction.atomic():
        # Fresh from the database and scoped to the account: opt-out can't be stale.
        lead = Lead.objects.select_for_update().filter(pk=lead.pk, account=account).first()
        if lead is None:
            raise ValidationFailed("No such lead in this account.", errors={"leadId": ["No such lead."]})
        if lead.is_opted_out:
            raise OptOutBlocked()
        if text and not window_open(lead):
            raise WindowClosed()
        provider = provider_for(account)
        fields = {
            "account": account,
            "lead": lead,
            "direction": Message.Direction.OUTBOUND,
            "status": Message.Status.QUEUED,
            "source": source,
            "provider": provider.name,
            "sent_by": user,
        }
        if template:
            approved = template_for_send(account=account, ref=template)
            message = Message.objects.create(
                **fields,
                type=Message.Type.TEMPLATE,
                template_name=approved.name,
                template_language=approved.language,
                template_params=list(template.params),
                body=_render_template_body(approved, list(template.params)),
            )
        else:
            message = Message.objects.create(**fields, type=Message.Type.TEXT, body=text)
    if deliver_now:
        try:
            return message_deliver(message_id=message.pk)
        except ProviderError:
            # Retryable (Meta's throughput limits, a network error) and given back
            # unclaimed: the worker tries again with backoff. The caller gets it queued.
            queue_delivery(message.pk)
            message.refresh_from_db()
            return message
    queue_delivery(message.pk)
    return message


def queue_delivery(message_id) -> None:
    """Hands the message to the worker once the surrounding transaction commits, and
    makes sure the sweeper that rescues lost deliveries is scheduled."""

    def enqueue() -> None:
        from django_q.tasks import async_task

        async_task("messaging.tasks.deliver_message", str(message_id))
        delivery_sweeper_ensure()

    transaction.on_commit(enqueue)


SWEEPER_FUNC = "messaging.tasks.requeue_stale_messages"
_sweeper_seen_until = 0.0  # monotonic time until which this process trusts the schedule exists


def delivery_sweeper_ensure() -> None:
    """Schedules the sweeper (messaging.tasks.requeue_stale_messages) every minute, once
    per deployment: looked for at most hourly per process, created when missing."""
    global _sweeper_seen_until
    if time.monotonic() < _sweeper_seen_until:
        return
    from django_q.models import Schedule

    if not Schedule.objects.filter(func=SWEEPER_FUNC).exists():
        Schedule.objects.create(
            name="Requeue abandoned outbound messages",
            func=SWEEPER_FUNC,
            schedule_type=Schedule.MINUTES,
            minutes=1,
            repeats=-1,
        )
    _sweeper_seen_until = time.monotonic() + 3600


# --- Delivery ---------------------------------------------------------------------------
#
# At least once to the worker, at most once to Meta. django-q2 may run a delivery task
# twice (or lose it when a worker dies), so the task only asks; the send itself is
# guarded by a claim on the message row, taken with a conditional update before the
# provider is called. The claim is released only when the provider said nothing was
# accepted (a retryable error). A claim that is neither released nor followed by a
# wamid means a worker died mid-send: after MESSAGE_CLAIM_TIMEOUT the message may be
# claimed again — unless Meta's status webhook has linked it in the meantime through
# the message id sent as ``biz_opaque_callback_data`` (see docs/DECISIONS.md).


def claim_timeout() -> timedelta:
    """How long a claim protects a message from other workers."""
    return timedelta(seconds=settings.MESSAGE_CLAIM_TIMEOUT)


def _claim(message_id) -> datetime | None:
    """Takes the message for delivery: exactly one caller gets its claim time, the
    others None. Claimable: a queued outbound message without a wamid that nobody
    claimed, or whose claim is older than the claim timeout."""
    now = timezone.now()
    claimed = (
        Message.objects.filter(
            pk=message_id, direction=Message.Direction.OUTBOUND, status=Message.Status.QUEUED, wamid__isnull=True
        )
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - claim_timeout()))
        .update(claimed_at=now, attempts=F("attempts") + 1)
    )
    return now if claimed else None


def message_deliver(*, message_id) -> Message:
    """Calls the provider for a queued outbound message, once.

    The claim is a conditional update, so two workers handed the same task (django-q2
    delivers at least once) can't both send. Opt-out is checked again here: a lead
    who opted out after the message was queued gets nothing. A retryable provider
    error releases the claim and is raised for the caller to schedule a retry."""
    claimed_at = _claim(message_id)
    if claimed_at is None:
        return Message.objects.get(pk=message_id)
    # The connection comes along for the throughput cap (a reverse one-to-one, joined).
    message = Message.objects.select_related("lead", "account__whatsapp_connection").get(pk=message_id)
    lead = message.lead
    if lead.is_opted_out:
        return _fail(message, "OPT_OUT", "Not sent: the contact opted out before delivery.")
    connection = getattr(message.account, "whatsapp_connection", None)  # None: the sandbox
    provider = provider_for_connection(connection)
    if connection is not None:
        throughput_wait(key=connection.phone_number_id, per_second=connection.throughput_cap)
    to = lead.phone.lstrip("+")
    try:
        if message.type == Message.Type.TEMPLATE:
            result = provider.send_template(
                to=to,
                name=message.template_name,
                language=message.template_language,
                components=_template_components(message.template_params),
                reference=str(message.pk),
            )
        else:
            result = provider.send_text(to=to, body=message.body, reference=str(message.pk))
    except ProviderError as exc:
        if exc.retryable:
            # Nothing was accepted: give the message back for a later attempt (unless
            # our claim went stale meanwhile and another worker holds it now).
            Message.objects.filter(pk=message.pk, claimed_at=claimed_at).update(claimed_at=None)
            raise
        return _provider_failure(message, exc)
    now = timezone.now()
    # Meta's status webhook may have got here first (and moved the status further):
    # statuses never move backwards.
    moved = Message.objects.filter(pk=message.pk, status=Message.Status.QUEUED).update(
        wamid=result.wamid, status=Message.Status.SENT, sent_at=now
    )
    if moved:
        message.wamid, message.status, message.sent_at = result.wamid, Message.Status.SENT, now
    else:
        Message.objects.filter(pk=message.pk, wamid__isnull=True).update(wamid=result.wamid)
        message.refresh_from_db()
    Lead.objects.filter(pk=lead.pk).update(last_outbound_at=now, last_message_at=now)
    if provider.name == Message.Provider.SANDBOX:
        from django_q.tasks import async_task

        transaction.on_commit(lambda: async_task("messaging.tasks.sandbox_walk_statuses", str(message.pk)))
    return message


def messages_requeue_stale(*, limit: int = 10_000) -> int:
    """Queues delivery again for messages a worker abandoned: claimed longer ago than
    the claim timeout without a wamid; and, once the task queue is empty, queued that
    long ago and never claimed (the task was lost with a dead worker or a Redis broker,
    or never enqueued). While tasks are waiting, an unclaimed message is most likely one
    of them: a broadcast draining at the number's cap must not get a second task per
    message every minute. A duplicate task is harmless anyway (the claim makes it a
    no-op). Answers how many were queued."""
    stale = timezone.now() - claim_timeout()
    abandoned = Q(claimed_at__lt=stale)
    if not _tasks_waiting():
        abandoned |= Q(claimed_at__isnull=True, created_at__lt=stale)
    ids = list(
        Message.objects.filter(direction=Message.Direction.OUTBOUND, status=Message.Status.QUEUED, wamid__isnull=True)
        .filter(abandoned)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    for message_id in ids:
        queue_delivery(message_id)
    return len(ids)


def _tasks_waiting() -> bool:
    """Whether django-q2's queue holds tasks, waiting or (ORM broker) taken by a worker."""
    from django_q.brokers import get_broker

    broker = get_broker()
    return bool(broker.queue_size() or broker.lock_size())


def message_give_up(*, message_id, code: str, title: str) -> Message:
    """Fails a queued message that ran out of attempts, unless a worker holds it now
    (a duplicate task may be sending it this very moment)."""
    if _claim(message_id) is None:
        return Message.objects.get(pk=message_id)
    return _fail(Message.objects.get(pk=message_id), code, title)


def _fail(message: Message, code: str, title: str) -> Message:
    """Marks a queued message failed (a status webhook that got here first wins)."""
    Message.objects.filter(pk=message.pk, status=Message.Status.QUEUED).update(
        status=Message.Status.FAILED, error_code=code, error_title=title[:300], failed_at=timezone.now()
    )
    message.refresh_from_db()
    return message


def _provider_failure(message: Message, exc: ProviderError) -> Message:
    if exc.code == META_TOKEN_INVALID:
        WhatsAppConnection.objects.filter(account_id=message.account_id).update(
            status=WhatsAppConnection.Status.TOKEN_INVALID, status_detail=exc.title[:300]
        )
    return _fail(message, exc.code, exc.title)


def raise_for_failed(message: Message) -> Message:
    """For single sends: a failed message becomes the matching API error."""
    if message.status != Message.Status.FAILED:
        return message
    if message.error_code in ("OPT_OUT",):
        raise OptOutBlocked()
    if message.error_code == META_WINDOW_CLOSED:
        raise WindowClosed()
    raise SendFailed(
        f"WhatsApp did not accept the message ({message.error_code}: {message.error_title}).",
        errors={"messageId": [str(message.pk)]},
    )


# --- Statuses ---------------------------------------------------------------------------

_RANK = {
    Message.Status.QUEUED: 0,
    Message.Status.SENT: 1,
    Message.Status.DELIVERED: 2,
    Message.Status.READ: 3,
}
_STAMP = {
    Message.Status.SENT: "sent_at",
    Message.Status.DELIVERED: "delivered_at",
    Message.Status.READ: "read_at",
    Message.Status.FAILED: "failed_at",
}


def message_status_apply(
    *, wamid: str, status: str, at: datetime, reference: str = "", error_code: str = "", error_title: str = ""
) -> bool:
    """Applies a delivery status, idempotently and never backwards: `read` after
    `read` does nothing, a late `delivered` after `read` only fills its timestamp, and
    `failed` applies only before delivery. Answers whether the status moved."""
    if reference and not Message.objects.filter(wamid=wamid).exists():
        # The send's answer was lost (worker died): Meta's echo of our id links them.
        Message.objects.filter(pk=_uuid_or_none(reference), wamid__isnull=True).update(wamid=wamid)
    messages = Message.objects.filter(wamid=wamid, direction=Message.Direction.OUTBOUND)
    stamp = _STAMP.get(status)
    if stamp is None:
        return False
    # Fill this status's timestamp (and the earlier ones it implies) where missing.
    implied = [s for s, rank in _RANK.items() if 0 < rank <= _RANK.get(status, -1)]
    for step in implied or [status]:
        messages.filter(**{f"{_STAMP[step]}__isnull": True}).update(**{_STAMP[step]: at})
    if status == Message.Status.FAILED:
        moved = messages.filter(status__in=[Message.Status.QUEUED, Message.Status.SENT]).update(
            status=status, error_code=error_code[:20], error_title=error_title[:300]
        )
    else:
        # A failed message stays failed; anything below the new status moves up.
        lower = [s for s, rank in _RANK.items() if rank < _RANK[status]]
        moved = messages.filter(status__in=lower).update(status=status)
    return bool(moved)


def _uuid_or_none(value: str):
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        return None


# --- Templates and connection -----------------------------------------------------------


def templates_sync(*, account: Account) -> int:
    """Replaces the account's templates with the provider's list; answers the count."""
    provider = provider_for(account)
    listed = provider.list_templates()
    now = timezone.now()
    sandbox = provider.name == Message.Provider.SANDBOX
    rows = [
        Template(
            account=account,
            name=item.get("name", "")[:512],
            language=str(item.get("language", ""))[:16],
            category=str(item.get("category", ""))[:32],
            status=str(item.get("status", "PENDING"))[:16],
            components=item.get("components") or [],
            meta_id=str(item.get("id", ""))[:64],
            is_sandbox=sandbox,
            synced_at=now,
        )
        for item in listed
        if item.get("name")
    ]
    with transaction.atomic():
        Template.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["account", "name", "language"],
            update_fields=["category", "status", "components", "meta_id", "is_sandbox", "synced_at"],
        )
        # Templates Meta no longer lists are gone.
        Template.objects.filter(account=account).exclude(synced_at=now).delete()
        WhatsAppConnection.objects.filter(account=account).update(templates_synced_at=now)
    return len(rows)


def verify_token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def whatsapp_connect(
    *,
    account: Account,
    phone_number_id: str,
    waba_id: str,
    access_token: str,
    app_secret: str,
    verify_token: str,
    throughput_cap: int = 80,
) -> WhatsAppConnection:
    """Checks the credentials against the Graph API, then saves them (secrets
    encrypted). Nothing is saved when Meta refuses them."""
    probe = CloudApiProvider(
        phone_number_id=phone_number_id, waba_id=waba_id, access_token=access_token, max_attempts=2
    )
    try:
        info = probe.phone_number_info()
    except ProviderError as exc:
        raise ValidationFailed(
            f"WhatsApp refused these credentials ({exc.code}: {exc.title}).",
            errors={"accessToken": [f"{exc.code}: {exc.title}"]},
        ) from None
    taken = WhatsAppConnection.objects.filter(phone_number_id=phone_number_id).exclude(account=account)
    if taken.exists():
        raise ValidationFailed(
            "This phone number is connected to another workspace.",
            errors={"phoneNumberId": ["Already connected to another workspace."]},
        )
    connection, _ = WhatsAppConnection.objects.update_or_create(
        account=account,
        defaults={
            "phone_number_id": phone_number_id,
            "waba_id": waba_id,
            "access_token": access_token,
            "app_secret": app_secret,
            "verify_token_hash": verify_token_digest(verify_token),
            "display_phone_number": str(info.get("display_phone_number", ""))[:32],
            "verified_name": str(info.get("verified_name", ""))[:200],
            "throughput_cap": throughput_cap,
            "status": WhatsAppConnection.Status.CONNECTED,
            "status_detail": "",
            "connected_at": timezone.now(),
        },
    )
    try:
        templates_sync(account=account)
    except ProviderError as exc:  # connected all the same; templates can be synced later
        logger.warning("Template sync after connect failed for %s: %s", account.pk, exc)
    return connection


def whatsapp_disconnect(*, account: Account) -> bool:
    with transaction.atomic():
        deleted, _ = WhatsAppConnection.objects.filter(account=account).delete()
        Template.objects.filter(account=account, is_sandbox=False).delete()
    return bool(deleted)


def coexistence_update(
    *,
    connection: WhatsAppConnection,
    enabled: bool | None = None,
    record_app_echoes: bool | None = None,
    sync_app_contacts: bool | None = None,
) -> WhatsAppConnection:
    changes = {
        "coexistence_enabled": enabled,
        "record_app_echoes": record_app_echoes,
        "sync_app_contacts": sync_app_contacts,
    }
    for name, value in changes.items():
        if value is not None:
            setattr(connection, name, value)
    # Meta caps coexistence numbers at 20 messages a second.
    if connection.coexistence_enabled and connection.throughput_cap > 20:
        connection.throughput_cap = 20
    connection.save()
    return connection


def messages_mark_read(*, lead: Lead) -> int:
    """Marks the lead's inbound messages as seen by the team (HeyDoc's unread count)."""
    return Message.objects.filter(lead=lead, direction=Message.Direction.INBOUND, is_read=False).update(is_read=True)


# --- Bulk -------------------------------------------------------------------------------


@dataclass
class BulkSendResult:
    queued: int = 0
    skipped_opted_out: int = 0
    window_closed: int = 0
    invalid: int = 0
    message_ids: list = field(default_factory=list)


def message_send_bulk(
    *,
    account: Account,
    leads: Iterable[Lead],
    text: str = "",
    template: TemplateRef | None = None,
    user: User | None = None,
    source: str = Message.Source.BULK,
) -> BulkSendResult:
    """Queues one message per lead for the worker (``message_send`` with
    ``deliver_now=False``). Opted-out leads, and for free-form text leads whose
    24-hour window is closed, are skipped and counted rather than refused.

    ``leads`` are rows the caller loaded in one query; the first sorting happens on
    them without a query per lead, and ``message_send`` checks each lead again under
    its row lock, so one who opted out a moment ago is still skipped."""
    text = clean_text(text)
    if bool(text) == bool(template):
        raise ValidationFailed("Send either a text or a template.", errors={"message": ["Give a text or a template."]})
    if template:
        template_for_send(account=account, ref=template)  # refused before anything is queued
    result = BulkSendResult()
    for lead in leads:
        if lead.account_id != account.pk:
            result.invalid += 1
        elif lead.is_opted_out:
            result.skipped_opted_out += 1
        elif text and not window_open(lead):
            result.window_closed += 1
        else:
            try:
                message = message_send(
                    account=account,
                    lead=lead,
                    text=text,
                    template=template,
                    user=user,
                    source=source,
                    deliver_now=False,
                )
            except OptOutBlocked:
                result.skipped_opted_out += 1
            except WindowClosed:
                result.window_closed += 1
            except ValidationFailed:  # deleted meanwhile
                result.invalid += 1
            else:
                result.queued += 1
                result.message_ids.append(message.pk)
    return result
