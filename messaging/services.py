"""Writes of messaging: the one sending service, delivery, status changes, templates
and the WhatsApp connection.

Every path that sends — single send, bulk, broadcast, drip step, scheduled message,
HeyDoc send_message, admin action — goes through ``message_send`` (checks) and
``message_deliver`` (the provider call). Opt-out is checked in both: when the message
is created and again right before the provider is called.
"""

import hashlib
import itertools
import logging
import os
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Account, User
from heroshhi.errors import DomainError, ValidationFailed
from heroshhi.text import clean_text
from leads.models import Lead
from messaging.models import Message, Template, WhatsAppConnection
from messaging.providers import (
    RETRYABLE_META_CODES,
    UNKNOWN_OUTCOME,
    UNKNOWN_OUTCOME_CODES,
    CloudApiProvider,
    Provider,
    ProviderError,
    SendResult,
    provider_for,
    provider_for_connection,
)
from messaging.throughput import current_window, throughput_take, window_end

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


def window_open_q(*, now: datetime) -> Q:
    """window_open as a filter on leads, for reading many at once (a broadcast's
    snapshot): the same rule, answered by the database."""
    return Q(last_inbound_at__gt=now - WINDOW)


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


# Messages per delivery task when many are queued at once (broadcasts, drips, schedules).
DELIVERY_BATCH_SIZE = 100


def queue_delivery_batch(message_ids: Iterable, *, task: str = "messaging.tasks.deliver_messages", args=()) -> int:
    """Hands many queued messages to the worker once the surrounding transaction
    commits, DELIVERY_BATCH_SIZE per task instead of one task each. ``task`` receives
    ``(*args, [message ids])``; campaigns pass their own task to follow up on a batch.
    Answers how many tasks will be queued."""
    ids = [str(message_id) for message_id in message_ids]
    batches = [ids[i : i + DELIVERY_BATCH_SIZE] for i in range(0, len(ids), DELIVERY_BATCH_SIZE)]

    def enqueue() -> None:
        from django_q.tasks import async_task

        for batch in batches:
            async_task(task, *args, batch)
        delivery_sweeper_ensure()

    if batches:
        transaction.on_commit(enqueue)
    return len(batches)


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
# guarded by a claim on the message rows, taken with one conditional update before the
# provider is called: each row goes to the one caller whose update matched it, marked
# with that caller's claim token. The claim is released only when the provider said
# nothing was accepted (a retryable error). A claim that is neither released nor
# followed by a wamid means a worker died mid-send: after MESSAGE_CLAIM_TIMEOUT the
# message may be claimed again — unless Meta's status webhook has linked it in the
# meantime through the message id sent as ``biz_opaque_callback_data`` (see
# docs/DECISIONS.md).
#
# A batch costs a constant number of queries whatever its size: the claim, one read
# (messages with their leads), one for the connections, then per flush one UPDATE for
# the sent messages and one for their leads (plus one per distinct error, and one to
# give messages back), and one every OPT_OUT_RECHECK_SECONDS while messages wait (so a
# lead who opts out mid-batch gets nothing more). The HTTP calls run concurrently on a
# small thread pool (WHATSAPP_SEND_CONCURRENCY), each having taken a slot of the number's
# per-second cap first; every database and cache call stays on the calling thread.


def claim_timeout() -> timedelta:
    """How long a claim protects a message from other workers."""
    return timedelta(seconds=settings.MESSAGE_CLAIM_TIMEOUT)


def _claim(message_ids: list) -> uuid.UUID | None:
    """Takes the messages for delivery in one conditional update and answers the claim
    token that marks the rows this caller got (None: it got none). Claimable: a queued
    outbound message without a wamid that nobody claimed, or whose claim is older than
    the claim timeout. Two callers racing for the same rows each get a row at most once:
    the update re-checks the condition on the row it locks."""
    now = timezone.now()
    token = uuid.uuid4()
    ids, in_ids = _ids_in(message_ids)
    query = (
        f"UPDATE {_MESSAGES} SET {_col('claimed_at')} = %s, {_col('claim_token')} = %s, "  # noqa: S608
        f"{_col('attempts')} = {_col('attempts')} + 1 "
        f"WHERE {_col('id')} {in_ids} AND {_col('direction')} = %s AND {_col('status')} = %s "
        f"AND {_col('wamid')} IS NULL AND ({_col('claimed_at')} IS NULL OR {_col('claimed_at')} < %s)"
    )
    claimed = _execute(
        query,
        [
            _db_datetime(now),
            _db_value("claim_token", token),
            *ids,
            str(Message.Direction.OUTBOUND),
            str(Message.Status.QUEUED),
            _db_datetime(now - claim_timeout()),
        ],
    )
    return token if claimed else None


def message_deliver(*, message_id) -> Message:
    """Calls the provider for a queued outbound message, once.

    The claim is a conditional update, so two workers handed the same task (django-q2
    delivers at least once) can't both send. Opt-out is checked again here: a lead
    who opted out after the message was queued gets nothing. A retryable provider
    error (after the provider's own retries) releases the claim and is raised for the
    caller to schedule a retry. A message that does not exist raises
    Message.DoesNotExist; one that someone else holds or that is no longer queued is
    answered as it is."""
    ids, _ = _valid_ids([message_id])
    if not ids:
        raise Message.DoesNotExist(f"No message {message_id!r}.")
    delivery = _Delivery(ids, concurrency=1)
    delivery.run()
    if delivery.retry_ids:
        raise delivery.retry_error
    message = delivery.message
    if message is None:  # not ours to send: answered as it is now
        return Message.objects.get(pk=ids[0])
    sent = delivery.sent_now.get(message.pk)
    if sent:  # as written: no need to read it back
        message.wamid, message.sent_at = sent
        message.status, message.claim_token = Message.Status.SENT, None
    else:  # failed, or Meta's status webhook got there first
        message.refresh_from_db()
    return message


@dataclass
class DeliveryBatchResult:
    """What a batch delivery did: final statuses counted, and the ids it gave back
    unclaimed after a retryable provider error (to deliver again after ``retry_after``)."""

    statuses: dict = field(default_factory=dict)
    missing: int = 0
    retry_ids: list = field(default_factory=list)
    retry_error: ProviderError | None = None


def messages_deliver_batch(*, message_ids: Iterable) -> DeliveryBatchResult:
    """Delivers queued messages, each at most once, in one claim and a constant number
    of queries; the provider calls run concurrently within the number's cap.

    Opted-out leads' messages fail with OPT_OUT without a provider call. On the first
    retryable provider error that outlives the provider's own retries (Meta's
    throughput limits, a network error before anything was sent) it stops sending:
    that message and every one not sent yet are given back unclaimed in
    ``retry_ids`` (the failing one first), rather than pressed on a number that is
    pushing back. Messages sent or failed meanwhile are counted in ``statuses``, with
    every id that was not ours to send (already sent, failed, held by another worker)
    counted by its current status; ids naming no message are ``missing``. Retries left
    alone at the end of a batch, waiting out a backoff, are given back the same way:
    a later task sends them, and this worker moves on to the next batch."""
    ids, invalid = _valid_ids(message_ids)
    delivery = _Delivery(ids, concurrency=settings.WHATSAPP_SEND_CONCURRENCY, hand_back_tail=len(ids) > 1)
    delivery.run()
    return DeliveryBatchResult(
        statuses=delivery.statuses,
        missing=invalid + delivery.missing,
        retry_ids=delivery.retry_ids,
        retry_error=delivery.retry_error,
    )


def _valid_ids(message_ids: Iterable) -> tuple[list[uuid.UUID], int]:
    """The ids as UUIDs, in order, once each; and how many values were not UUIDs (they
    name no message)."""
    seen: dict[uuid.UUID, None] = {}
    invalid = 0
    for value in message_ids:
        try:
            seen.setdefault(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)), None)
        except ValueError:
            invalid += 1
    return list(seen), invalid


_LATE = object()  # a slot's window ended before its request could go out
# Deferred: the batch ran out of its time budget waiting for throughput slots.
DEFERRED = "DEFERRED"
# Sent and failed messages are written at least every this many, and while the run waits
# for the cap or a backoff at most once a FLUSH_INTERVAL (the cap's windows are a tenth
# of a second): few statements, and little to lose if a worker dies.
FLUSH_EVERY = 200
FLUSH_INTERVAL = 1.0
# A batch's last sends waiting longer than this for a retry are handed to a later task.
TAIL_WAIT = 0.05
# A lead who opts out while a batch holding their message is sending gets nothing more:
# the messages still waiting in a lane are checked again at most this often (one query).
OPT_OUT_RECHECK_SECONDS = 0.5
OPT_OUT_TITLE = "Not sent: the contact opted out before delivery."


@dataclass(eq=False)
class _Send:
    """A claimed message on its way out: what the request needs, and its attempts."""

    index: int
    pk: uuid.UUID
    account_id: int
    lead_id: uuid.UUID
    to: str
    type: str
    body: str
    template_name: str
    template_language: str
    template_params: list
    provider: Provider | None = None
    attempts: int = 0  # HTTP attempts made in this run
    due: float = 0.0  # monotonic time a retry waits for
    throttled: bool = False  # its retry waits because the number is pushing back
    error: ProviderError | None = None  # why it is being retried


_SEND_FIELDS = ("pk", "account_id", "lead_id", "lead__phone", "type", "body", "template_name", "template_language")


@dataclass(eq=False)
class _Lane:
    """The sends of one number: its provider, and its cap (none for the sandbox)."""

    provider: Provider
    key: str | None
    per_second: int
    sends: list = field(default_factory=list)

    def take(self, count: int) -> tuple[int | None, int]:
        if self.key is None:
            return None, count
        return throughput_take(key=self.key, per_second=self.per_second, count=count)


class _Delivery:
    """One run of delivery over the messages it claims (see messages_deliver_batch)."""

    def __init__(self, ids: list[uuid.UUID], *, concurrency: int, hand_back_tail: bool = False):
        self.ids = ids
        self.concurrency = max(1, int(concurrency))
        self.token: uuid.UUID | None = None
        self.message: Message | None = None  # one message: the instance, for message_deliver
        self.claimed: set[uuid.UUID] = set()
        self.statuses: dict[str, int] = {}
        self.missing = 0
        self.retry_ids: list = []
        self.retry_error: ProviderError | None = None
        self.sent_now: dict[uuid.UUID, tuple[str, datetime]] = {}  # written as sent by this run
        self._sent: list[tuple[_Send, str]] = []
        self._failed: list[tuple[_Send, ProviderError]] = []
        self._first_retry: _Send | None = None
        self._given_back: list[_Send] = []
        self._flushed_at = time.monotonic()
        # A batch whose only sends left wait out a backoff gives them back rather than
        # keep its worker idle (a single send waits: its caller is answering a request).
        self.hand_back_tail = hand_back_tail
        # A task must finish well within django-q2's timeout (which kills it, leaving
        # its claims to the sweeper) and the claim timeout: past this budget, the
        # messages still waiting for a slot are given back for a later run.
        budget = min(settings.Q_CLUSTER.get("timeout", 120), settings.MESSAGE_CLAIM_TIMEOUT) / 2
        self.deadline = time.monotonic() + max(budget, 1)

    # --- the run ------------------------------------------------------------------------

    def run(self) -> None:
        if self.ids:
            self.token = _claim(self.ids)
        lanes = self._load() if self.token else []
        pool = _send_pool(min(self.concurrency, max((len(lane.sends) for lane in lanes), default=1)))
        for lane in lanes:
            self._run_lane(lane, pool)
        self._flush()
        self._give_back()
        self._count_unclaimed()

    def _load(self) -> list[_Lane]:
        """Reads back what this run claimed (one query, plus one for the connections of
        a batch), fails the opted-out, sorts the rest into lanes by number."""
        claimed = Message.objects.filter(claim_token=self.token)
        if len(self.ids) == 1:
            # The caller wants the Message back; its connection comes in the same query.
            m = self.message = claimed.select_related("lead", "account__whatsapp_connection").first()
            rows, connections = [], {}
            if m is not None:
                lead = m.lead
                row = (m.pk, m.account_id, m.lead_id, lead.phone, m.type, m.body, m.template_name, m.template_language)
                rows = [(*row, m.template_params, lead.is_opted_out)]
                connections = {m.account_id: getattr(m.account, "whatsapp_connection", None)}
        else:
            # Plain rows, not model instances: a third of the CPU of a batch otherwise.
            rows = list(claimed.values_list(*_SEND_FIELDS, "template_params", "lead__is_opted_out"))
            order = {pk: index for index, pk in enumerate(self.ids)}
            rows.sort(key=lambda row: order.get(row[0], 0))
            connections = dict.fromkeys({row[1] for row in rows if not row[-1]})
            # Read once per workspace (its secrets are decrypted on every row read).
            connections.update(
                (c.account_id, c) for c in WhatsAppConnection.objects.filter(account_id__in=list(connections))
            )
        self.claimed = {row[0] for row in rows}
        opted_out = [row[0] for row in rows if row[-1]]
        if opted_out:
            self._fail_many(opted_out, "OPT_OUT", OPT_OUT_TITLE)
        lanes: dict = {}
        for index, row in enumerate(row for row in rows if not row[-1]):
            pk, account_id, lead_id, phone, kind, body, name, language, params, _ = row
            lane = lanes.get(account_id)
            if lane is None:
                connection = connections[account_id]  # None: the sandbox
                lane = lanes[account_id] = _Lane(
                    provider=provider_for_connection(connection),
                    key=connection.phone_number_id if connection else None,
                    per_second=connection.throughput_cap if connection else 0,
                )
            to = phone.lstrip("+")
            lane.sends.append(
                _Send(index, pk, account_id, lead_id, to, kind, body, name, language, params, lane.provider)
            )
        return list(lanes.values())

    def _run_lane(self, lane: _Lane, pool) -> None:
        """Sends a number's messages: takes slots for as many as may be in flight, lets
        them out on the pool, settles the answers; a retryable error holds back new
        sends until its retry (with backoff, a slot of its own) settles."""
        queue = deque(lane.sends)
        retrying: list[_Send] = []
        inflight: dict[Future, _Send] = {}
        # Slots are taken for the sends that can go out now (one cache round trip for
        # up to WHATSAPP_SEND_CONCURRENCY sends) and spent within their window.
        prepaid_window, prepaid = None, 0
        recheck_at = time.monotonic() + OPT_OUT_RECHECK_SECONDS  # _load has just checked
        while queue or retrying or inflight:
            if (queue or retrying) and time.monotonic() >= recheck_at:
                self._drop_opted_out(queue, retrying)
                recheck_at = time.monotonic() + OPT_OUT_RECHECK_SECONDS
            if self.retry_error is None and (queue or retrying) and time.monotonic() > self.deadline:
                self.retry_error = ProviderError(
                    DEFERRED, "The number's throughput was taken by other sends; deferred.", retryable=True
                )
            if (
                self.hand_back_tail
                and self.retry_error is None
                and retrying
                and not queue
                and not inflight
                and min(send.due for send in retrying) - time.monotonic() > TAIL_WAIT
            ):
                first = min(retrying, key=lambda send: send.due)
                self.retry_error, self._first_retry = first.error, first
                retrying.remove(first)
            if self.retry_error is not None:  # stopped: nothing new goes out
                self._given_back.extend(retrying)
                self._given_back.extend(queue)
                retrying.clear()
                queue.clear()
                if not inflight:
                    break
            now = time.monotonic()
            due = [send for send in retrying if send.due <= now]
            fresh = []
            # Meta pushing back on the number (throughput, too many to one user, or an
            # HTTP 429) holds new sends until the retry is due; a server error or a
            # network failure of one request holds up only that request.
            if self.retry_error is None and not any(send.throttled for send in retrying):
                fresh = list(itertools.islice(queue, max(0, self.concurrency - len(inflight))))
            wanted = due + fresh
            wait = None
            if wanted:
                if prepaid and prepaid_window != current_window():
                    prepaid = 0  # their window is over: unused, they are lost
                if prepaid < len(wanted):
                    # Only what can go out now: a slot left unused when its tenth of a
                    # second ends is lost to the number's throughput.
                    window, granted = lane.take(len(wanted) - prepaid)
                    if window != prepaid_window:
                        prepaid = 0
                    prepaid_window, prepaid = window, prepaid + granted
                spend = min(prepaid, len(wanted))
                prepaid -= spend
                for send in wanted[:spend]:
                    if send in due:
                        retrying.remove(send)
                    else:
                        queue.popleft()
                    inflight[pool.submit(_attempt, send, prepaid_window)] = send
                if spend < len(wanted):
                    wait = max(window_end(prepaid_window) - time.time(), 0.001)
            if retrying:
                until_due = max(min(send.due for send in retrying) - time.monotonic(), 0.001)
                wait = until_due if wait is None else min(wait, until_due)
            if inflight:
                done, _ = futures_wait(inflight, timeout=wait, return_when=FIRST_COMPLETED)
                for future in done:
                    self._settle(inflight.pop(future), future.result(), queue, retrying)
            elif wait is not None:
                if time.monotonic() - self._flushed_at >= FLUSH_INTERVAL:
                    self._flush()  # something to do while the cap or a backoff holds us
                time.sleep(wait)
            if len(self._sent) + len(self._failed) >= FLUSH_EVERY:
                self._flush()

    def _drop_opted_out(self, queue: deque, retrying: list) -> None:
        """Fails, without a provider call, the waiting messages whose lead opted out
        since the batch was loaded."""
        waiting = {send.lead_id for send in itertools.chain(queue, retrying)}
        opted_out = set(Lead.objects.filter(pk__in=waiting, is_opted_out=True).values_list("pk", flat=True))
        if not opted_out:
            return
        dropped = [send.pk for send in itertools.chain(queue, retrying) if send.lead_id in opted_out]
        kept = [send for send in queue if send.lead_id not in opted_out]
        queue.clear()
        queue.extend(kept)
        retrying[:] = [send for send in retrying if send.lead_id not in opted_out]
        self._fail_many(dropped, "OPT_OUT", OPT_OUT_TITLE)

    def _settle(self, send: _Send, outcome, queue: deque, retrying: list) -> None:
        if outcome is _LATE:  # not sent: goes out again with a fresh slot
            if send.attempts:
                send.due = 0.0
                retrying.append(send)
            else:
                queue.appendleft(send)
            return
        send.attempts += 1
        if isinstance(outcome, SendResult):
            self._sent.append((send, outcome.wamid))
        elif not outcome.retryable:
            self._failed.append((send, outcome))
        elif self.retry_error is None and send.attempts < send.provider.max_attempts:
            send.due = time.monotonic() + send.provider.retry_pause(send.attempts, outcome)
            send.throttled, send.error = _pushing_back(outcome), outcome
            retrying.append(send)
        elif self.retry_error is None:
            self.retry_error = outcome
            self._first_retry = send
        else:
            self._given_back.append(send)

    # --- the writes ---------------------------------------------------------------------

    def _flush(self) -> None:
        self._flushed_at = time.monotonic()
        sent, self._sent = self._sent, []
        failed, self._failed = self._failed, []
        if sent:
            self._record_sent(sent)
        by_error: dict[tuple[str, str], list[_Send]] = defaultdict(list)
        for send, exc in failed:
            by_error[(exc.code, exc.title)].append(send)
        for (code, title), sends in by_error.items():
            if code == META_TOKEN_INVALID:
                WhatsAppConnection.objects.filter(account_id__in={s.account_id for s in sends}).update(
                    status=WhatsAppConnection.Status.TOKEN_INVALID, status_detail=title[:300]
                )
            self._fail_many([s.pk for s in sends], code, title)

    def _record_sent(self, sent: list[tuple[_Send, str]]) -> None:
        """One UPDATE for the messages — the wamid, and `sent` unless Meta's status
        webhook got there first and moved one further (statuses never move backwards;
        its wamid, the same, stays) — and one for their leads' timestamps, committed
        together."""
        now = timezone.now()
        with transaction.atomic():
            rows = _sent_update([(send.pk, wamid) for send, wamid in sent], now)
            ids, in_ids = _ids_in({send.lead_id for send, _ in sent}, model=Lead)
            leads = (
                f"UPDATE {_LEADS} SET {_col('last_outbound_at', Lead)} = %s, "  # noqa: S608
                f"{_col('last_message_at', Lead)} = %s "
                f"WHERE {_col('id', Lead)} {in_ids}"
            )
            _execute(leads, [_db_datetime(now), _db_datetime(now), *ids])
        for send, wamid in sent:
            status, stored_wamid = rows.get(send.pk, (None, None))
            if status is None:  # deleted meanwhile
                self.missing += 1
                continue
            self._count(status)
            if status == Message.Status.SENT and stored_wamid == wamid:
                self.sent_now[send.pk] = (wamid, now)
        sandbox = [str(send.pk) for send, _ in sent if send.provider.name == Message.Provider.SANDBOX]
        if sandbox:
            from django_q.tasks import async_task

            transaction.on_commit(lambda: async_task("messaging.tasks.sandbox_walk_statuses", *sandbox))

    def _fail_many(self, message_ids: list, code: str, title: str) -> None:
        """Fails queued messages with one error (a status webhook that got there first wins)."""
        failed = _fail_queued(message_ids, code, title)
        if failed == len(message_ids):
            self._count(Message.Status.FAILED, failed)
        else:
            for status in Message.objects.filter(pk__in=message_ids).values_list("status", flat=True):
                self._count(status)

    def _give_back(self) -> None:
        """Releases the claims of the messages not sent, for a later run: those that
        were tried keep their attempt, the others get it back."""
        if self.retry_error is None:
            return
        given = sorted(self._given_back, key=lambda send: send.index)
        if self._first_retry is not None:
            given.insert(0, self._first_retry)
        self.retry_ids = [str(send.pk) for send in given]
        tried = [send.pk for send in given if send.attempts]
        untried = [send.pk for send in given if not send.attempts]
        mine = Message.objects.filter(claim_token=self.token)  # a stale claim may be someone else's now
        if tried:
            mine.filter(pk__in=tried).update(claimed_at=None, claim_token=None)
        if untried:
            mine.filter(pk__in=untried).update(claimed_at=None, claim_token=None, attempts=F("attempts") - 1)

    def _count_unclaimed(self) -> None:
        """Counts every id this run did not claim by its status now; the rest are missing."""
        others = [pk for pk in self.ids if pk not in self.claimed]
        if not others:
            return
        found = 0
        for status in Message.objects.filter(pk__in=others).values_list("status", flat=True):
            self._count(status)
            found += 1
        self.missing += len(others) - found

    def _count(self, status: str, count: int = 1) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + count


_PUSH_BACK_CODES = {str(code) for code in RETRYABLE_META_CODES} | {"HTTP_429"}


def _pushing_back(error: ProviderError) -> bool:
    return error.code in _PUSH_BACK_CODES


def _attempt(send: _Send, window: int | None):
    """One provider request (on a pool thread: no database, no cache). Answers the
    SendResult, the ProviderError, or _LATE when the slot's window is over."""
    if window is not None and current_window() != window:
        return _LATE
    try:
        if send.type == Message.Type.TEMPLATE:
            return send.provider.send_template(
                to=send.to,
                name=send.template_name,
                language=send.template_language,
                components=_template_components(send.template_params),
                reference=str(send.pk),
                single_attempt=True,
            )
        return send.provider.send_text(to=send.to, body=send.body, reference=str(send.pk), single_attempt=True)
    except ProviderError as exc:
        return exc
    except Exception as exc:  # a bug, not an answer: the request may have gone out
        logger.exception("Sending message %s failed unexpectedly", send.pk)
        return ProviderError(UNKNOWN_OUTCOME, f"Unexpected error while sending: {exc}"[:300])


# --- Delivery SQL -------------------------------------------------------------------------
#
# The statements run for every batch are written as SQL: the ORM's Case/When and its
# 100-placeholder IN lists cost more CPU than the sends themselves. Identifiers come from
# the models' meta and are quoted by the backend; every value is a bound parameter. On
# PostgreSQL a list of ids is one array parameter (``= ANY(%s)``).

_MESSAGES = db_connection.ops.quote_name(Message._meta.db_table)
_LEADS = db_connection.ops.quote_name(Lead._meta.db_table)


def _col(name: str, model=Message) -> str:
    return db_connection.ops.quote_name(model._meta.get_field(name).column)


def _db_value(name: str, value, model=Message):
    return model._meta.get_field(name).get_db_prep_value(value, db_connection)


def _db_datetime(value: datetime):
    return _db_value("created_at", value)


def _ids_in(ids: Iterable, *, model=Message) -> tuple[list, str]:
    """Parameters and the ``IN`` test for a list of primary keys."""
    values = [model._meta.pk.get_db_prep_value(pk, db_connection) for pk in ids]
    if db_connection.vendor == "postgresql":
        return [values], "= ANY(%s)"
    return values, f"IN ({', '.join(['%s'] * len(values))})"


def _execute(sql: str, params: list) -> int:
    with db_connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _sent_update(sent: list[tuple[uuid.UUID, str]], now: datetime) -> dict[uuid.UUID, tuple[str, str]]:
    """UPDATE … RETURNING for many sent messages at once; answers each row's status and
    wamid after it. Every right-hand side reads the row as it was (sent_at tests the old
    status). PostgreSQL joins the (id, wamid) pairs as two arrays; SQLite (3.35+ for
    RETURNING) picks each wamid with CASE."""
    queued, sent_status = str(Message.Status.QUEUED), str(Message.Status.SENT)
    stamp = _db_datetime(now)
    wamid, status, sent_at, token, id_ = (_col(name) for name in ("wamid", "status", "sent_at", "claim_token", "id"))
    sets = (
        f"{sent_at} = CASE WHEN {_MESSAGES}.{status} = %s THEN %s ELSE {_MESSAGES}.{sent_at} END, "
        f"{status} = CASE WHEN {_MESSAGES}.{status} = %s THEN %s ELSE {_MESSAGES}.{status} END, "
        f"{token} = NULL"
    )
    returning = f"RETURNING {_MESSAGES}.{id_}, {_MESSAGES}.{status}, {_MESSAGES}.{wamid}"
    if db_connection.vendor == "postgresql":
        query = (
            f"UPDATE {_MESSAGES} SET {wamid} = COALESCE({_MESSAGES}.{wamid}, sent.wamid), {sets} "  # noqa: S608
            f"FROM unnest(%s::uuid[], %s::text[]) AS sent(id, wamid) WHERE {_MESSAGES}.{id_} = sent.id {returning}"
        )
        params = [queued, stamp, queued, sent_status, [pk for pk, _ in sent], [w for _, w in sent]]
    else:
        ids, in_ids = _ids_in(pk for pk, _ in sent)
        pairs = [value for (_, w), pk in zip(sent, ids, strict=True) for value in (pk, w)]
        when = " ".join(["WHEN %s THEN %s"] * len(sent))
        query = (
            f"UPDATE {_MESSAGES} SET {wamid} = COALESCE({wamid}, CASE {id_} {when} END), {sets} "  # noqa: S608
            f"WHERE {id_} {in_ids} {returning}"
        )
        params = [*pairs, queued, stamp, queued, sent_status, *ids]
    with db_connection.cursor() as cursor:
        cursor.execute(query, params)
        return {_as_uuid(row[0]): (row[1], row[2]) for row in cursor.fetchall()}


def _as_uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _fail_queued(message_ids: list, code: str, title: str) -> int:
    return Message.objects.filter(pk__in=message_ids, status=Message.Status.QUEUED).update(
        status=Message.Status.FAILED,
        error_code=code[:20],
        error_title=title[:300],
        failed_at=timezone.now(),
        claim_token=None,
    )


class _Inline:
    """An executor that runs the call at once, in the calling thread (one message)."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to the caller, as a pool would
            future.set_exception(exc)
        return future


_pool_lock = threading.Lock()
_pool: dict = {"pid": None, "size": 0, "executor": None}


def _send_pool(size: int):
    """The process's thread pool for provider requests (made again after a fork, or
    when WHATSAPP_SEND_CONCURRENCY changed); one request in flight runs inline."""
    if size <= 1:
        return _Inline()
    with _pool_lock:
        if _pool["pid"] != os.getpid() or _pool["size"] != size:
            old = _pool["executor"]
            if old is not None and _pool["pid"] == os.getpid():
                old.shutdown(wait=False)
            _pool.update(pid=os.getpid(), size=size, executor=ThreadPoolExecutor(size, thread_name_prefix="wa-send"))
        return _pool["executor"]


def messages_requeue_stale(*, limit: int = 10_000) -> int:
    """Queues delivery again for messages a worker abandoned: claimed longer ago than
    the claim timeout without a wamid; and, once the task queue is empty, queued that
    long ago and never claimed (the task was lost with a dead worker or a Redis broker,
    or never enqueued). While tasks are waiting, an unclaimed message is most likely one
    of them: a broadcast draining at the number's cap must not get a second task per
    message every minute. A duplicate task is harmless anyway (the claim makes it a
    no-op). Queued in batches (DELIVERY_BATCH_SIZE per task); answers how many
    messages were queued."""
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
    queue_delivery_batch(ids)
    return len(ids)


def _tasks_waiting() -> bool:
    """Whether django-q2's queue holds tasks, waiting or (ORM broker) taken by a worker."""
    from django_q.brokers import get_broker

    broker = get_broker()
    return bool(broker.queue_size() or broker.lock_size())


def message_give_up(*, message_id, code: str, title: str) -> Message:
    """Fails a queued message that ran out of attempts, unless a worker holds it now
    (a duplicate task may be sending it this very moment)."""
    if _claim([message_id]) is not None:
        _fail_queued([message_id], code, title)
    return Message.objects.get(pk=message_id)


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
        # A dead worker's claim on it is spent: the message is known to have gone out.
        Message.objects.filter(pk=_uuid_or_none(reference), wamid__isnull=True).update(wamid=wamid, claim_token=None)
    messages = Message.objects.filter(wamid=wamid, direction=Message.Direction.OUTBOUND)
    stamp = _STAMP.get(status)
    if stamp is None:
        return False
    # Fill this status's timestamp (and the earlier ones it implies) where missing.
    implied = [s for s, rank in _RANK.items() if 0 < rank <= _RANK.get(status, -1)]
    for step in implied or [status]:
        messages.filter(**{f"{_STAMP[step]}__isnull": True}).update(**{_STAMP[step]: at})
    # Failed for want of Meta's answer (the request went out, the answer was lost):
    # Meta's status is the answer.
    unknown = Q(status=Message.Status.FAILED, error_code__in=UNKNOWN_OUTCOME_CODES)
    if status == Message.Status.FAILED:
        moved = messages.filter(Q(status__in=[Message.Status.QUEUED, Message.Status.SENT]) | unknown).update(
            status=status, error_code=error_code[:20], error_title=error_title[:300]
        )
    else:
        # A failed message stays failed; anything below the new status moves up.
        lower = [s for s, rank in _RANK.items() if rank < _RANK[status]]
        moved = messages.filter(status__in=lower).update(status=status)
        # It did go out after all: no longer failed, no error.
        moved += messages.filter(unknown).update(status=status, error_code="", error_title="", failed_at=None)
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
            "quality_rating": str(info.get("quality_rating", "")).upper()[:16],
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
