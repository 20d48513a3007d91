"""Writes of broadcasts: create, start (snapshot the audience into the outbox), send a
draft, cancel, and mark finished.

Life of a broadcast::

    draft ──send──▶ scheduled ──start (at scheduled_at)──▶ sending ──no message queued──▶ completed
                        │                                     │
                        └──────────── cancel ─────────────────┴──▶ cancelled
    start finds nothing to send (template no longer approved, empty audience) ──▶ failed

Starting is one transaction: a conditional update takes the broadcast (scheduled →
sending; a second dispatcher's update matches no row), then the audience is evaluated
and snapshotted into outbox ``messaging.Message`` rows, set-based (one SELECT and one
INSERT per chunk of leads). The rows are unique per (broadcast, lead), so nothing can
create a lead's message twice, and ``messaging.services.message_deliver`` claims each
row before calling the provider, so nothing sends one twice. Opted-out leads are skipped
at the snapshot and again by ``message_deliver`` right before each send.
"""

import json
import logging
import os
import re
import time
import uuid
import zoneinfo
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DatabaseError, connection, transaction
from django.db.models import BooleanField, CharField, ExpressionWrapper, Q
from django.db.models.functions import Cast
from django.utils import timezone

from accounts.models import User
from campaigns.models import Broadcast
from campaigns.selectors.broadcasts import (
    audience_counts,
    audience_leads,
    audience_normalize,
    broadcasts_due,
)
from campaigns.services import dispatch_at, dispatcher_ensure
from campaigns.services.variables import render_param, render_variables, select_related_for, variables_check
from heroshhi.errors import DomainError, ValidationFailed
from heroshhi.pgcopy import VARYING, copy_escape, copy_line_format, copy_text
from heroshhi.text import clean_text
from leads.selectors import lead_scope
from messaging.models import Message, Template
from messaging.providers import provider_for
from messaging.services import (
    TemplateRef,
    TemplateUnavailable,
    _render_template_body,
    claim_timeout,
    queue_delivery_batch,
    template_for_send,
    window_open_q,
)

logger = logging.getLogger(__name__)

START_TASK = "campaigns.tasks.broadcasts.start"
SEND_BATCH_TASK = "campaigns.tasks.broadcasts.send_batch"
# Leads per snapshot chunk: one SELECT and one INSERT (COPY) each.
SNAPSHOT_CHUNK = 5000
# Rows handed to an open COPY at a time while the rest of the chunk is rendered.
STREAM_ROWS = 250
# WhatsApp's limit for a text message body; longer renderings are skipped as invalid.
MAX_TEXT = 4096
MAX_SCHEDULE_AHEAD = timedelta(days=366)
# Larger audiences are snapshotted by a worker (seconds later) rather than inside the
# request, which must answer well within the web server's timeout.
SNAPSHOT_INLINE_MAX = 20_000
# The minute dispatcher stops starting broadcasts after this long (the rest wait a minute).
START_BUDGET_SECONDS = 30.0


class BroadcastStateError(DomainError):
    status_code = 400
    code = "INVALID_BROADCAST_STATE"
    default_message = "The broadcast can't do this in its current status."


# --- Checks -------------------------------------------------------------------------------


_PLACEHOLDER = re.compile(r"\{\{\s*(\d+)\s*\}\}")


def _body_parameters(template: Template) -> int | None:
    """How many parameters the template's body takes ({{1}}, {{2}}, …), or None when
    its body text isn't known."""
    body = next(
        (c.get("text") for c in template.components or [] if str(c.get("type", "")).upper() == "BODY"),
        None,
    )
    if body is None:
        return None
    return len(set(_PLACEHOLDER.findall(body)))


def _content_check(*, account, text: str, template: TemplateRef | None) -> tuple[str, Template | None]:
    """The text (cleaned) or the approved template, with their variables checked.
    Raises VALIDATION_ERROR or TEMPLATE_NOT_APPROVED."""
    text = clean_text(text)
    if bool(text) == bool(template):
        message = "Give either `message` or `template`."
        raise ValidationFailed(message, errors={"message": [message]})
    if text:
        if len(text) > MAX_TEXT:
            raise ValidationFailed(
                f"message: At most {MAX_TEXT} characters.", errors={"message": [f"At most {MAX_TEXT} characters."]}
            )
        variables_check(field="message", texts=[text])
        return text, None
    variables_check(field="template", texts=[str(param) for param in template.params])
    approved = template_for_send(account=account, ref=template)
    expected = _body_parameters(approved)
    if expected is not None and expected != len(template.params):
        message = f"Template {approved.name!r} takes {expected} parameter(s); {len(template.params)} given."
        raise ValidationFailed(f"template: {message}", errors={"template": [message]})
    return "", approved


def _when(scheduled_at: datetime | None, *, account, now: datetime) -> datetime | None:
    """``scheduledAt`` made aware (naive: the account's time zone) and not in the past."""
    if scheduled_at is None:
        return None
    if timezone.is_naive(scheduled_at):
        scheduled_at = scheduled_at.replace(tzinfo=zoneinfo.ZoneInfo(account.time_zone))
    if scheduled_at > now + MAX_SCHEDULE_AHEAD:
        raise ValidationFailed(
            "scheduledAt: At most a year ahead.", errors={"scheduledAt": ["At most 366 days from now."]}
        )
    return max(scheduled_at, now)


def _audience_check(*, user: User, audience: dict) -> dict:
    """VALIDATION_ERROR when no lead of the audience can be messaged (none matched, or
    every match opted out): nothing would be sent."""
    counts = audience_counts(user=user, audience=audience)
    if counts["recipients"] == 0:
        detail = f" ({counts['optedOut']} opted out)" if counts["optedOut"] else ""
        message = f"The audience has no lead that can be messaged{detail}."
        key = "leadIds" if "leadIds" in audience else "filter"
        raise ValidationFailed(f"{key}: {message}", errors={key: [message]})
    return counts


# --- Create, send, cancel -----------------------------------------------------------------


def broadcast_create(
    *,
    user: User,
    name: str = "",
    text: str = "",
    template: TemplateRef | None = None,
    lead_ids: list | None = None,
    filters: dict | None = None,
    scheduled_at: datetime | None = None,
    draft: bool = False,
) -> Broadcast:
    """Checks everything, then creates the broadcast: a draft, scheduled for later, or
    started now (its audience snapshotted into queued messages before this returns).
    Nothing is created when a check fails."""
    account = user.account
    now = timezone.now()
    text, approved = _content_check(account=account, text=text, template=template)
    audience = audience_normalize(user=user, lead_ids=lead_ids, filters=filters)
    counts = _audience_check(user=user, audience=audience)
    when = _when(scheduled_at, account=account, now=now)
    name = clean_text(name)[:200]
    if not name:
        local = timezone.localtime(now, zoneinfo.ZoneInfo(account.time_zone))
        name = f"Broadcast {local:%Y-%m-%d %H:%M}"
    broadcast = Broadcast.objects.create(
        account=account,
        name=name,
        text=text,
        template_name=approved.name if approved else "",
        template_language=approved.language if approved else "",
        template_params=[str(param) for param in template.params] if approved else [],
        audience=audience,
        status=Broadcast.Status.DRAFT if draft else Broadcast.Status.SCHEDULED,
        scheduled_at=when if draft else (when or now),
        created_by=user,
    )
    if draft:
        return broadcast
    return _schedule_or_start(broadcast, inline=counts["matched"] <= SNAPSHOT_INLINE_MAX)


def broadcast_send(*, broadcast: Broadcast, scheduled_at: datetime | None = None) -> Broadcast:
    """Sends a draft now, or at ``scheduled_at`` (else at the time the draft was given
    when that is still ahead). Its content and audience are checked again, as at
    creation; a second send of the same draft is refused."""
    if broadcast.status != Broadcast.Status.DRAFT:
        raise BroadcastStateError(f"Only a draft can be sent; this broadcast is {broadcast.status}.")
    creator = broadcast.created_by
    if creator is None or not creator.is_active:
        raise BroadcastStateError("The draft's author is no longer in the workspace; create a new broadcast.")
    now = timezone.now()
    template = (
        TemplateRef(broadcast.template_name, broadcast.template_language, list(broadcast.template_params))
        if broadcast.template_name
        else None
    )
    _content_check(account=broadcast.account, text=broadcast.text, template=template)
    counts = _audience_check(user=creator, audience=broadcast.audience)
    when = _when(scheduled_at, account=broadcast.account, now=now)
    if when is None:
        when = broadcast.scheduled_at if broadcast.scheduled_at and broadcast.scheduled_at > now else now
    taken = Broadcast.objects.filter(pk=broadcast.pk, status=Broadcast.Status.DRAFT).update(
        status=Broadcast.Status.SCHEDULED, scheduled_at=when, updated_at=now
    )
    if not taken:  # sent (or cancelled) by a concurrent request
        raise BroadcastStateError("This draft was sent or cancelled meanwhile.")
    broadcast.status, broadcast.scheduled_at = Broadcast.Status.SCHEDULED, when
    return _schedule_or_start(broadcast, inline=counts["matched"] <= SNAPSHOT_INLINE_MAX)


def _schedule_key(broadcast: Broadcast) -> str:
    return f"broadcast-{broadcast.pk}-{int(broadcast.scheduled_at.timestamp())}"


def _schedule_or_start(broadcast: Broadcast, *, inline: bool = True) -> Broadcast:
    """A broadcast due later gets a one-off start at its time (the minute dispatcher is
    the safety net). One due now starts here, or, when ``inline`` is False (a large
    audience), in a worker task queued at once."""
    dispatcher_ensure()
    pk = str(broadcast.pk)
    if broadcast.scheduled_at > timezone.now():
        when, key = broadcast.scheduled_at, _schedule_key(broadcast)
        transaction.on_commit(lambda: dispatch_at(when, func=START_TASK, key=key, args=(pk,)))
        return broadcast
    if not inline:
        from django_q.tasks import async_task

        transaction.on_commit(lambda: async_task(START_TASK, pk))
        return broadcast
    try:
        broadcast_start(broadcast_id=broadcast.pk)
    except DatabaseError:
        # E.g. a lead deleted while its message was inserted. The broadcast stays
        # scheduled (the start was one transaction) and the minute dispatcher retries.
        logger.exception("Starting broadcast %s failed; the dispatcher will retry", broadcast.pk)
    broadcast.refresh_from_db()
    return broadcast


def broadcast_cancel(*, broadcast: Broadcast) -> Broadcast:
    """Cancels a draft, scheduled or sending broadcast. A scheduled one never starts.
    Of a sending one, the queued messages no worker holds are deleted in one statement
    (counted in ``cancelled_unsent``); messages being sent right now finish. Cancelling
    a cancelled broadcast changes nothing; a finished one can't be cancelled."""
    now = timezone.now()
    with transaction.atomic():
        not_started = Broadcast.objects.filter(
            pk=broadcast.pk, status__in=[Broadcast.Status.DRAFT, Broadcast.Status.SCHEDULED]
        ).update(status=Broadcast.Status.CANCELLED, finished_at=now, updated_at=now)
        if not_started:
            from django_q.models import Schedule

            Schedule.objects.filter(name__startswith=f"campaigns-broadcast-{broadcast.pk}", func=START_TASK).delete()
        elif Broadcast.objects.filter(pk=broadcast.pk, status=Broadcast.Status.SENDING).update(
            status=Broadcast.Status.CANCELLED, finished_at=now, updated_at=now
        ):
            # Unclaimed, or claimed by a worker that died (the sweeper would send it again
            # after the cancel): messaging's own rule presumes those unsent.
            unsent = Message.objects.filter(
                broadcast_id=broadcast.pk, status=Message.Status.QUEUED, wamid__isnull=True
            ).filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - claim_timeout()))
            dropped, _ = unsent.delete()  # one DELETE: nothing refers to a message
            Broadcast.objects.filter(pk=broadcast.pk).update(cancelled_unsent=dropped)
        else:
            current = Broadcast.objects.filter(pk=broadcast.pk).values_list("status", flat=True).first()
            if current != Broadcast.Status.CANCELLED:
                raise BroadcastStateError(f"A {current} broadcast can't be cancelled.")
    broadcast.refresh_from_db()
    return broadcast


# --- Start: the snapshot ------------------------------------------------------------------


@dataclass
class Snapshot:
    message_ids: list = field(default_factory=list)
    opted_out: int = 0
    invalid: int = 0
    window_closed: int = 0

    @property
    def matched(self) -> int:
        return len(self.message_ids) + self.opted_out + self.invalid + self.window_closed


def snapshot_chunk_size() -> int:
    return SNAPSHOT_CHUNK


@dataclass(slots=True)
class _Assignee:
    name: str
    email: str


@dataclass(slots=True)
class _LeadRow:
    """What the snapshot reads of a lead: the fields variables render, opt-out and the
    window. Plain tuples from the database, not model instances (a tenth of the cost)."""

    pk: str  # the id as text
    name: str
    phone: str
    email: str
    source: str
    status: str
    segment: str
    inquiry: str
    is_opted_out: bool
    window_open: bool  # messaging's 24-hour window, answered by the database
    assigned_to: _Assignee | None = None


_LEAD_COLUMNS = [
    "pk",
    "name",
    "phone",
    "email",
    "source",
    "status",
    "segment",
    "inquiry",
    "is_opted_out",
    "window_open",
]


def _lead_chunks(*, user: User, audience: dict, size: int, related: list[str], now: datetime):
    """The audience's leads as _LeadRow, ``size`` at a time, one query per chunk:
    explicit ids in slices, a filter page by page on the primary key (keyset, so no
    page is re-read and none is skipped)."""
    # The id as text: it only goes back into the COPY, and the driver's UUID objects
    # cost a second per 100,000 leads to make and print again.
    columns = ["id_text", *_LEAD_COLUMNS[1:]]
    if "assigned_to" in related:
        columns += ["assigned_to__name", "assigned_to__email"]

    def rows(queryset) -> list[_LeadRow]:
        found = []
        annotated = queryset.annotate(
            id_text=Cast("pk", output_field=CharField()),
            window_open=ExpressionWrapper(window_open_q(now=now), output_field=BooleanField()),
        )
        for values in annotated.values_list(*columns):
            lead = _LeadRow(*values[: len(_LEAD_COLUMNS)])
            if len(values) > len(_LEAD_COLUMNS) and (values[-2] or values[-1]):
                lead.assigned_to = _Assignee(values[-2] or "", values[-1] or "")
            found.append(lead)
        return found

    if "leadIds" in audience:
        ids = sorted(audience["leadIds"])
        visible = lead_scope(user=user).order_by("pk")
        for start in range(0, len(ids), size):
            chunk = rows(visible.filter(pk__in=ids[start : start + size]))
            if chunk:
                yield chunk
        return
    leads = audience_leads(user=user, audience=audience).order_by("pk")
    last = None
    while True:
        chunk = rows((leads.filter(pk__gt=last) if last is not None else leads)[:size])
        if not chunk:
            return
        yield chunk
        if len(chunk) < size:
            return
        last = chunk[-1].pk


def _uuid4_text() -> str:
    """A random (version 4) UUID in its text form: what ``str(uuid.uuid4())`` gives, in
    a quarter of the time (the snapshot makes one per lead)."""
    digits = os.urandom(16).hex()
    variant = "89ab"[int(digits[16], 16) & 3]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"


class _OutboxWriter:
    """Inserts outbox messages as raw rows, one statement per chunk: COPY on PostgreSQL,
    one executemany elsewhere. Every column's value is prepared once for the broadcast,
    by the model field itself (a field added to Message later gets its default); per
    lead only the id, the lead, the body and the template parameters differ, filled
    into a row made once. Django's bulk_create spent ~0.5 ms a row preparing 30 values
    per message: minutes for 100,000 leads."""

    VARYING = ("id", "lead_id", "body", "template_params")

    def __init__(self, common: dict):
        fields = Message._meta.concrete_fields
        prototype = Message(**common)
        self.copy = connection.vendor == "postgresql"
        self.table = connection.ops.quote_name(Message._meta.db_table)
        self.columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        self.constants = [f.get_db_prep_save(getattr(prototype, f.attname), connection) for f in fields]
        self.slots = {f.attname: (i, f) for i, f in enumerate(fields) if f.attname in self.VARYING}
        if self.copy:
            # One COPY line with a {} where each varying value goes, in column order.
            varying = {index for index, _ in self.slots.values()}
            self.line = copy_line_format([VARYING if i in varying else value for i, value in enumerate(self.constants)])
            self.order = sorted(self.slots, key=lambda attname: self.slots[attname][0])
            params_index = self.slots["template_params"][0]
            self.no_params = copy_text(self.constants[params_index])
        self.rows: list = []

    @contextmanager
    def chunk(self):
        """One statement for the rows added inside: on PostgreSQL a COPY open while they
        are rendered, fed every STREAM_ROWS rows, so the server inserts the first rows
        while Python renders the next; elsewhere one executemany at the end."""
        if not self.copy:
            yield
            self._insert_many()
            return
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {self.table} ({self.columns}) FROM STDIN") as copy,
        ):
            self._copy = copy
            try:
                yield
                self._feed()
            finally:
                self._copy = None

    def add(self, *, lead_id: uuid.UUID, body: str, template_params: list | None = None) -> str:
        message_id = _uuid4_text()
        if self.copy:
            values = {
                "id": message_id,
                "lead_id": str(lead_id),
                "body": copy_escape(body),
                "template_params": self.no_params
                if template_params is None
                else copy_escape(json.dumps(template_params)),
            }
            self.rows.append(self.line.format(*(values[attname] for attname in self.order)))
            if len(self.rows) >= STREAM_ROWS:
                self._feed()
            return message_id
        row = list(self.constants)
        values = {"id": uuid.UUID(message_id), "lead_id": lead_id, "body": body}
        if template_params is not None:
            values["template_params"] = template_params
        for attname, value in values.items():
            index, model_field = self.slots[attname]
            row[index] = model_field.get_db_prep_save(value, connection)
        self.rows.append(row)
        return message_id

    def _feed(self) -> None:
        if self.rows:
            self._copy.write("".join(self.rows))
            self.rows = []

    def _insert_many(self) -> None:
        if self.rows:
            placeholders = ", ".join(["%s"] * len(self.constants))
            insert = f"INSERT INTO {self.table} ({self.columns}) VALUES ({placeholders})"  # noqa: S608 (names quoted, values bound)
            with connection.cursor() as cursor:
                cursor.executemany(insert, self.rows)
            self.rows = []


def _snapshot(*, broadcast: Broadcast, template: Template | None, now: datetime) -> Snapshot:
    """Creates the queued outbox message of every lead of the audience that can be
    messaged, set-based: one SELECT and one INSERT (COPY) per chunk of leads. Skipped
    and counted: opted-out leads; for text, leads outside the 24-hour window (Meta would
    refuse them, 131047); leads whose rendering is invalid (a template parameter empty
    for them, a text too long). The caller holds the broadcast (taken conditionally, in
    this transaction), so its (broadcast, lead) rows can't exist yet."""
    user = broadcast.created_by
    texts = [broadcast.text] if broadcast.text else list(broadcast.template_params)
    related = select_related_for(texts)
    common = {
        "account_id": broadcast.account_id,
        "direction": Message.Direction.OUTBOUND,
        "status": Message.Status.QUEUED,
        "source": Message.Source.BROADCAST,
        "provider": provider_for(broadcast.account).name,
        "sent_by_id": user.pk,
        "broadcast_id": broadcast.pk,
        "created_at": now,
    }
    if template is None:
        common["type"] = Message.Type.TEXT
    else:
        common.update(type=Message.Type.TEMPLATE, template_name=template.name, template_language=template.language)
    writer = _OutboxWriter(common)
    result = Snapshot()
    chunks = _lead_chunks(user=user, audience=broadcast.audience, size=snapshot_chunk_size(), related=related, now=now)
    for leads in chunks:
        with writer.chunk():
            for lead in leads:
                values = _message_values(lead, broadcast=broadcast, template=template, now=now, result=result)
                if values is not None:
                    result.message_ids.append(writer.add(lead_id=lead.pk, **values))
    return result


def _message_values(
    lead: _LeadRow, *, broadcast: Broadcast, template: Template | None, now: datetime, result: Snapshot
) -> dict | None:
    """The lead's message (body, parameters), or None when it is skipped (counted)."""
    if lead.is_opted_out:
        result.opted_out += 1
        return None
    if template is None:
        if not lead.window_open:
            result.window_closed += 1
            return None
        body = render_variables(broadcast.text, lead=lead).strip()
        if not body or len(body) > MAX_TEXT:
            result.invalid += 1
            return None
        return {"body": body}
    params = [render_param(param, lead=lead) for param in broadcast.template_params]
    if any(param is None for param in params):
        result.invalid += 1  # Meta refuses an empty parameter
        return None
    return {"body": _render_template_body(template, params), "template_params": params}


def _start_failure(broadcast: Broadcast) -> tuple[str, Template | None]:
    """Why the broadcast can't start (an error text, or ""), and its template."""
    creator = broadcast.created_by
    if creator is None or not creator.is_active:
        return "Its author is no longer in the workspace.", None
    if not broadcast.template_name:
        return "", None
    try:
        ref = TemplateRef(broadcast.template_name, broadcast.template_language, list(broadcast.template_params))
        return "", template_for_send(account=broadcast.account, ref=ref)
    except TemplateUnavailable as exc:
        return exc.message, None


def broadcast_start(*, broadcast_id) -> bool:
    """Starts a scheduled broadcast that is due: takes it (a conditional update, so two
    dispatchers or a duplicate task can't both start it), snapshots its audience and
    queues delivery in batches — in one transaction, so a crash leaves it scheduled and
    untouched. Answers whether this call started it."""
    now = timezone.now()
    with transaction.atomic():
        taken = Broadcast.objects.filter(
            pk=broadcast_id, status=Broadcast.Status.SCHEDULED, scheduled_at__lte=now
        ).update(status=Broadcast.Status.SENDING, started_at=now, updated_at=now)
        if not taken:
            return False
        broadcast = Broadcast.objects.select_related("account", "created_by").get(pk=broadcast_id)
        error, template = _start_failure(broadcast)
        if error:
            Broadcast.objects.filter(pk=broadcast.pk).update(
                status=Broadcast.Status.FAILED, error=error[:300], finished_at=now, updated_at=now
            )
            return True
        snapshot = _snapshot(broadcast=broadcast, template=template, now=now)
        outcome: dict = {}
        if not snapshot.message_ids:
            # Nothing to send: done at once. Failed when nobody matched at all.
            outcome = {"status": Broadcast.Status.COMPLETED, "finished_at": now}
            if not snapshot.matched:
                outcome = {
                    "status": Broadcast.Status.FAILED,
                    "finished_at": now,
                    "error": "No lead matched the audience when the broadcast started.",
                }
        Broadcast.objects.filter(pk=broadcast.pk).update(
            recipients=len(snapshot.message_ids),
            skipped_opted_out=snapshot.opted_out,
            skipped_invalid=snapshot.invalid,
            skipped_window_closed=snapshot.window_closed,
            updated_at=now,
            **outcome,
        )
        queue_delivery_batch(snapshot.message_ids, task=SEND_BATCH_TASK, args=(str(broadcast.pk),))
    return True


# --- Finish -------------------------------------------------------------------------------


def broadcast_complete_if_done(*, broadcast_id) -> bool:
    """Marks a sending broadcast completed once none of its messages is queued. Called
    after each delivery batch; the minute dispatcher catches the rest (messages the
    sweeper delivered). Answers whether this call completed it."""
    if Message.objects.filter(broadcast_id=broadcast_id, status=Message.Status.QUEUED).exists():
        return False
    now = timezone.now()
    return bool(
        Broadcast.objects.filter(pk=broadcast_id, status=Broadcast.Status.SENDING).update(
            status=Broadcast.Status.COMPLETED, finished_at=now, updated_at=now
        )
    )


def broadcasts_complete_finished() -> int:
    """Completes every sending broadcast with no queued message left. Two statements,
    not one UPDATE with NOT EXISTS: a broadcast seen as sending has its whole snapshot
    committed (one transaction), while an UPDATE waiting on a broadcast being started
    would re-check it against messages it can't see yet."""
    sending = list(Broadcast.objects.filter(status=Broadcast.Status.SENDING).values_list("pk", flat=True))
    if not sending:
        return 0
    busy = set(
        Message.objects.filter(broadcast_id__in=sending, status=Message.Status.QUEUED)
        .order_by()
        .values_list("broadcast_id", flat=True)
        .distinct()
    )
    done = [pk for pk in sending if pk not in busy]
    if not done:
        return 0
    now = timezone.now()
    return Broadcast.objects.filter(pk__in=done, status=Broadcast.Status.SENDING).update(
        status=Broadcast.Status.COMPLETED, finished_at=now, updated_at=now
    )


def broadcasts_start_due() -> int:
    """The minute dispatcher's part: starts the scheduled broadcasts whose time has
    come (each taken conditionally; one that fails stays scheduled for the next minute)
    and completes sending ones with nothing left queued. Answers how many it started."""
    started = 0
    deadline = time.monotonic() + START_BUDGET_SECONDS
    for broadcast_id in broadcasts_due():
        if time.monotonic() > deadline:
            break
        try:
            started += broadcast_start(broadcast_id=broadcast_id)
        except Exception:
            logger.exception("Starting broadcast %s failed; it stays scheduled", broadcast_id)
    broadcasts_complete_finished()
    return started
