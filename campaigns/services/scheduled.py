"""Writes of HeyDoc's scheduled messages: create, status changes, delete, and the
dispatch of a due occurrence into messaging's outbox.

Dispatch is set-based: everything due is taken in batches of DUE_BATCH occurrences, each
batch in one transaction that locks the pending rows as it reads them, maps the
recipients to leads, inserts the outbox messages, marks the occurrences sent (or failed,
with the reason) and creates a recurring series' next occurrences. Two dispatchers (the
one-off django-q2 schedule of a due second, the every-minute safety net, a second
cluster, a task run twice) can't both take an occurrence: the rows one holds the other
skips, and a row taken is no longer pending. Delivery is then messaging's, in batches
across occurrences (claim per message, opt-out checked again, the number's throughput
cap).

Times: ``scheduled_time`` is an instant (stored in UTC). Input without an offset is
read in the account's time zone, and a recurring series keeps its first occurrence's
wall-clock time in that zone (09:00 stays 09:00 across DST changes)."""

import calendar
import logging
import re
import time
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from accounts.models import Account, User
from campaigns.models import ScheduledMessage
from campaigns.services import dispatch_at, dispatcher_ensure
from campaigns.services.variables import render_param, render_variables, select_related_for, variables_check
from heroshhi.errors import DomainError, ValidationFailed
from heroshhi.text import clean_text
from leads.models import Lead
from leads.phones import InvalidPhone, display_phone, to_e164
from messaging.models import Message, Template
from messaging.providers import provider_for
from messaging.services import (
    TemplateRef,
    TemplateUnavailable,
    _render_template_body,
    queue_delivery_batch,
    template_for_send,
    window_open,
)

logger = logging.getLogger(__name__)

MAX_RECIPIENTS = 1000
MAX_TEXT = 4096  # WhatsApp's limit for a text body
# A time this far in the past is still accepted (and sent at once): clients that
# schedule "now", clocks a little apart.
PAST_GRACE = timedelta(seconds=60)
MAX_AHEAD = timedelta(days=5 * 366)
DISPATCH_DUE_FUNC = "campaigns.tasks.scheduled.dispatch_due"
DUE_BATCH = 500  # occurrences dispatched in one transaction
DUE_BUDGET_SECONDS = 45.0  # then it stops: the next run goes on (Q_TIMEOUT is 120 s)

Status = ScheduledMessage.Status
Recurrence = ScheduledMessage.Recurrence

# What PUT /status may do. Same status again is a no-op; anything else is refused.
TRANSITIONS = {
    Status.PENDING: {Status.CANCELLED, Status.SENT, Status.FAILED},
    Status.CANCELLED: {Status.PENDING},
    Status.SENT: set(),
    Status.FAILED: set(),
}
MANUAL_CLOSE_NOTE = {
    Status.SENT: "Marked sent by hand; nothing was sent by Heroshhi.",
    Status.FAILED: "Marked failed by hand; nothing was sent.",
}


class InvalidStatusTransition(DomainError):
    status_code = 400
    code = "INVALID_STATUS_TRANSITION"
    default_message = "This status change is not allowed."


def _invalid(field_name: str, messages: list[str], summary: str | None = None) -> ValidationFailed:
    return ValidationFailed(f"{field_name}: {summary or messages[0]}", errors={field_name: messages})


# --- Input rules ---------------------------------------------------------------------------------


def scheduled_time_parse(*, account: Account, value: str | datetime, now: datetime | None = None) -> datetime:
    """The instant to send at, from ISO 8601 text (``2024-01-16T09:00:00Z``,
    ``…+05:30``) or a datetime. Without an offset it is a wall-clock time in the
    account's time zone (a time skipped by a DST change moves forward by the gap; a
    repeated one is its first occurrence). Seconds precision. Refused: a date without
    a time, anything unparseable, more than PAST_GRACE in the past, more than five
    years ahead."""
    now = now or timezone.now()
    if isinstance(value, datetime):
        moment = value
    else:
        text = value.strip() if isinstance(value, str) else ""
        if not text or len(text) > 64:
            raise _invalid("scheduled_time", ["Give an ISO 8601 date-time, e.g. 2024-01-16T09:00:00Z."])
        try:
            if parse_date(text) is not None:
                raise _invalid("scheduled_time", ["Give a time too, e.g. 2024-01-16T09:00:00Z, not only a date."])
            moment = parse_datetime(text)
        except ValueError:  # well formed, but no such date or time (2024-02-30)
            moment = None
        if moment is None:
            raise _invalid("scheduled_time", [f"{text[:64]!r} is not an ISO 8601 date-time (2024-01-16T09:00:00Z)."])
    try:
        if moment.tzinfo is None or moment.utcoffset() is None:
            moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(account.time_zone))
        moment = moment.astimezone(UTC).replace(microsecond=0)
    except (OverflowError, ValueError):  # year 1 with a positive offset, year 9999 with a negative one
        raise _invalid("scheduled_time", ["This date-time is out of range."]) from None
    if moment < now - PAST_GRACE:
        raise _invalid("scheduled_time", [f"{moment:%Y-%m-%dT%H:%M:%SZ} is in the past."])
    if moment > now + MAX_AHEAD:
        raise _invalid("scheduled_time", ["At most five years ahead."])
    return moment


def recipients_parse(*, account: Account, values) -> list[str]:
    """Phones as digits with the country code, in the given order, duplicates (the
    same number written two ways) collapsed. Read with the account's default country
    when written without a country code. 1 to MAX_RECIPIENTS of them; every invalid
    one is named."""
    if not isinstance(values, list | tuple):
        raise _invalid("recipients", ["Give a list of phone numbers."])
    if not values:
        raise _invalid("recipients", ["Give at least one phone number."])
    if len(values) > MAX_RECIPIENTS:
        raise _invalid("recipients", [f"At most {MAX_RECIPIENTS} phone numbers."])
    phones: dict[str, None] = {}
    invalid: list[str] = []
    for raw in values:
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            invalid.append(f"{str(raw)[:40]!r}: a phone number is a string.")
            continue
        text = str(raw)
        try:
            phones.setdefault(to_e164(text, account.default_country))
        except InvalidPhone as exc:
            invalid.append(f"{text[:40]!r}: {exc}")
    if invalid:
        shown = ", ".join(item.split(":", 1)[0] for item in invalid[:5])
        more = f" and {len(invalid) - 5} more" if len(invalid) > 5 else ""
        raise _invalid("recipients", invalid[:100], summary=f"{len(invalid)} invalid phone number(s): {shown}{more}.")
    return [display_phone(phone) for phone in phones]


def _creator_may_message(lead: Lead, creator: User | None) -> bool:
    """Admins (and a deleted creator) reach every lead of the account; an agent the
    leads assigned to them or to nobody, as everywhere else."""
    if creator is None or creator.is_account_admin:
        return True
    return lead.assigned_to_id is None or lead.assigned_to_id == creator.pk


def _refuse_colleagues_contacts(*, user: User, phones: list[str]) -> None:
    if user.is_account_admin:
        return
    taken = list(
        Lead.objects.filter(account_id=user.account_id, phone__in=["+" + p for p in phones])
        .exclude(Q(assigned_to__isnull=True) | Q(assigned_to=user))
        .values_list("phone", flat=True)[:100]
    )
    if taken:
        raise _invalid(
            "recipients",
            [f"{display_phone(p)}: a contact assigned to someone else; you can't message it." for p in taken],
        )


# --- Create, change, delete ----------------------------------------------------------------------


def _schedule_key(when: datetime) -> str:
    return f"scheduled-due-{int(when.timestamp())}"


def _dispatch_on_time(times: Iterable[datetime]) -> None:
    """A one-off django-q2 run of the dispatcher at each of these times (in the
    caller's transaction): one per second however many occurrences fall due in it,
    since each run dispatches everything due. The every-minute dispatcher is the
    safety net."""
    for when in sorted(set(times)):
        dispatch_at(when, func=DISPATCH_DUE_FUNC, key=_schedule_key(when))


def scheduled_message_create(
    *,
    user: User,
    recipients: list,
    scheduled_time: str | datetime,
    message: str = "",
    template: TemplateRef | None = None,
    recurrence: str = Recurrence.NONE,
    now: datetime | None = None,
) -> ScheduledMessage:
    """Validates everything, then stores the occurrence and its one-off schedule in
    one transaction: nothing is half-created. A template must be approved now (and is
    checked again when it is sent); ``message`` then holds its rendered body, shown by
    the list."""
    account = user.account
    if recurrence not in Recurrence.values:
        raise _invalid("recurrence", [f"Use one of: {', '.join(Recurrence.values)}."])
    text = clean_text(message)
    if bool(text) == bool(template):
        raise _invalid("message", ["Give either a message or a template."])
    if len(text) > MAX_TEXT:
        raise _invalid("message", [f"At most {MAX_TEXT} characters."])
    variables_check(field="message", texts=[text])
    if template:
        variables_check(field="template", texts=[str(p) for p in template.params])
    when = scheduled_time_parse(account=account, value=scheduled_time, now=now)
    phones = recipients_parse(account=account, values=recipients)
    _refuse_colleagues_contacts(user=user, phones=phones)
    fields = {"message": text}
    if template:
        approved = template_for_send(account=account, ref=template)
        params = [str(p) for p in template.params]
        fields = {
            "message": _render_template_body(approved, params),
            "template_name": approved.name,
            "template_language": approved.language,
            "template_params": params,
        }
    with transaction.atomic():
        scheduled = ScheduledMessage.objects.create(
            account=account,
            recipients=phones,
            scheduled_time=when,
            series_start=when,
            recurrence=recurrence,
            created_by=user,
            **fields,
        )
        _dispatch_on_time([scheduled.scheduled_time])
    dispatcher_ensure()
    return scheduled


def scheduled_message_status_set(
    *, scheduled_message: ScheduledMessage, status: str, now: datetime | None = None
) -> ScheduledMessage:
    """PUT /status. ``pending → cancelled`` (nothing will be sent), ``cancelled →
    pending`` (only while its time is still ahead), ``pending → sent|failed`` (a manual
    close: nothing is sent; a recurring series goes on with its next occurrence). Sent
    and failed are final. The same status again changes nothing. Each change is a
    conditional update, so it can't overtake a dispatch that took the occurrence."""
    now = now or timezone.now()
    if status not in Status.values:
        raise _invalid("status", [f"Use one of: {', '.join(Status.values)}."])
    current = scheduled_message.status
    if status == current:
        return scheduled_message
    if status not in TRANSITIONS[current]:
        raise InvalidStatusTransition(_refusal(current, status))
    rows = ScheduledMessage.objects.filter(pk=scheduled_message.pk, status=current)
    with transaction.atomic():
        if current == Status.PENDING:
            changed = rows.update(status=status, error=MANUAL_CLOSE_NOTE.get(status, ""), updated_at=now)
        else:  # cancelled → pending
            changed = rows.filter(scheduled_time__gt=now).update(status=status, error="", updated_at=now)
        if not changed:
            scheduled_message.refresh_from_db()
            if scheduled_message.status == current:  # still cancelled (a pending one always updates): too late
                raise InvalidStatusTransition(
                    "Its scheduled time has passed, so it can't be pending again: schedule a new message."
                )
            if scheduled_message.status == status:
                return scheduled_message
            raise InvalidStatusTransition(_refusal(scheduled_message.status, status))
        scheduled_message.refresh_from_db()
        if status == Status.PENDING:
            _dispatch_on_time([scheduled_message.scheduled_time])
        elif status in (Status.SENT, Status.FAILED):
            _next_occurrence_create(scheduled_message, now=now)
    return scheduled_message


def _refusal(current: str, wanted: str) -> str:
    if current in (Status.SENT, Status.FAILED):
        return f"This scheduled message is {current}, which is final: it can't become {wanted}."
    return f"A {current} scheduled message can't become {wanted}."


def scheduled_message_delete(*, scheduled_message: ScheduledMessage) -> None:
    """Deletes the occurrence: a pending one never sends (its one-off schedule still
    fires and finds nothing) and its series ends. Messages already queued by a
    dispatch stay in the conversations."""
    scheduled_messages_delete(scheduled_messages=ScheduledMessage.objects.filter(pk=scheduled_message.pk))


def scheduled_messages_delete(*, scheduled_messages: QuerySet[ScheduledMessage]) -> int:
    """Deletes them (the API's DELETE, the admin's delete). The rows are locked first,
    so a dispatch committing its outbox messages at this instant is waited for, and
    those messages are then kept (unlinked) rather than tripping the delete."""
    wanted = list(scheduled_messages.values_list("pk", flat=True))  # any queryset: joined, searched, …
    with transaction.atomic():
        ids = list(ScheduledMessage.objects.select_for_update().filter(pk__in=wanted).values_list("pk", flat=True))
        ScheduledMessage.objects.filter(pk__in=ids).delete()
    return len(ids)


def scheduled_messages_cancel(*, scheduled_messages: QuerySet[ScheduledMessage]) -> int:
    """Cancels the pending ones among them, in one statement (the admin's action)."""
    return scheduled_messages.filter(status=Status.PENDING).update(status=Status.CANCELLED, updated_at=timezone.now())


# --- Dispatch ------------------------------------------------------------------------------------


@dataclass
class DispatchResult:
    status: str
    queued: int = 0
    skipped_opted_out: int = 0
    skipped_window_closed: int = 0
    skipped_invalid: int = 0
    error: str = ""
    message_ids: list = field(default_factory=list)
    next_occurrence: ScheduledMessage | None = None


_PHONE_DIGITS = re.compile(r"\d{6,15}")


def _leads_for(account: Account, phones: list[str], *, related: list[str]) -> dict[str, Lead]:
    """The account's leads for these E.164 phones, set-based: one query for the known
    ones, one insert for the rest (source "api", named after the phone, as HeyDoc's
    send_message does), one query to read those back. ``related``: rows the variables
    read (the assignee), joined so rendering costs no query per lead."""
    known = Lead.objects.filter(account=account).select_related(*related)
    leads = {lead.phone: lead for lead in known.filter(phone__in=phones)}
    missing = [phone for phone in phones if phone not in leads]
    if missing:
        Lead.objects.bulk_create(
            [Lead(account=account, phone=phone, name=display_phone(phone), source="api") for phone in missing],
            ignore_conflicts=True,  # created a moment ago by someone else
        )
        leads.update({lead.phone: lead for lead in known.filter(phone__in=missing)})
    return leads


def _recipient_phones(scheduled: ScheduledMessage, result: DispatchResult) -> list[str]:
    """The occurrence's recipients as E.164, in order, each once; what is not a phone
    (a row edited by hand) is counted as invalid."""
    phones = []
    for digits in scheduled.recipients:
        if isinstance(digits, str) and _PHONE_DIGITS.fullmatch(digits):
            phones.append("+" + digits)
        else:
            result.skipped_invalid += 1
    return list(dict.fromkeys(phones))


def _texts(scheduled: ScheduledMessage) -> list[str]:
    """What is rendered per lead: the text, or the template's parameters."""
    return [str(p) for p in scheduled.template_params] if scheduled.template_name else [scheduled.message]


def _outbox_rows(
    scheduled: ScheduledMessage,
    *,
    phones: list[str],
    leads: dict[str, Lead],
    template: Template | None,
    provider: str,
    result: DispatchResult,
    now: datetime,
) -> list[Message]:
    """One occurrence's outbox messages, one per lead it may reach: opted-out leads,
    closed 24-hour windows (text only) and leads the creator may not message are
    skipped and counted in ``result``. Uses messaging's rules (window_open, the
    template's rendered body), never its own. No query: the leads are read already."""
    creator = scheduled.created_by
    rows = []
    for phone in phones:
        lead = leads.get(phone)
        if lead is None or not _creator_may_message(lead, creator):
            result.skipped_invalid += 1
            continue
        if lead.is_opted_out:
            result.skipped_opted_out += 1
            continue
        if template is None and not window_open(lead, now=now):
            result.skipped_window_closed += 1
            continue
        row = Message(
            account_id=scheduled.account_id,
            lead=lead,
            direction=Message.Direction.OUTBOUND,
            status=Message.Status.QUEUED,
            source=Message.Source.SCHEDULED,
            provider=provider,
            sent_by=creator,
            scheduled_message=scheduled,
        )
        if template is None:
            row.type = Message.Type.TEXT
            row.body = render_variables(scheduled.message, lead=lead)[:MAX_TEXT]
        else:
            params = [render_param(str(p), lead=lead) for p in scheduled.template_params]
            if None in params:  # a parameter empty (or too long) for this lead: Meta would refuse it
                result.skipped_invalid += 1
                continue
            row.type = Message.Type.TEMPLATE
            row.template_name, row.template_language = template.name, template.language
            row.template_params = params
            row.body = _render_template_body(template, params)
        rows.append(row)
    return rows


def _outboxes(taken: list[ScheduledMessage], now: datetime) -> dict[int, DispatchResult]:
    """Builds and inserts the outbox messages of the taken occurrences, set-based
    across all of them: the leads are read (and the unknown phones created) once per
    account, each template and provider looked up once, every message inserted in one
    go. An occurrence with nothing to send fails with the reason."""
    results: dict[int, DispatchResult] = {}
    templates: dict[tuple, Template | TemplateUnavailable] = {}
    providers: dict[int, str] = {}
    accounts: dict[int, Account] = {}
    wanted: dict[int, tuple[dict[str, None], set[str]]] = {}  # account id: phones, related rows
    phones_of: dict[int, list[str]] = {}
    for scheduled in taken:
        result = results[scheduled.pk] = DispatchResult(status=Status.SENT)
        if scheduled.template_name:
            key = (scheduled.account_id, scheduled.template_name, scheduled.template_language)
            if key not in templates:
                ref = TemplateRef(scheduled.template_name, scheduled.template_language, scheduled.template_params)
                try:
                    templates[key] = template_for_send(account=scheduled.account, ref=ref)
                except TemplateUnavailable as exc:
                    templates[key] = exc
            if isinstance(templates[key], TemplateUnavailable):
                result.status, result.error = Status.FAILED, templates[key].message
                continue
        phones_of[scheduled.pk] = _recipient_phones(scheduled, result)
        accounts[scheduled.account_id] = scheduled.account
        phones, related = wanted.setdefault(scheduled.account_id, ({}, set()))
        phones.update(dict.fromkeys(phones_of[scheduled.pk]))
        related.update(select_related_for(_texts(scheduled)))
    leads = {
        account_id: _leads_for(accounts[account_id], list(phones), related=sorted(related))
        for account_id, (phones, related) in wanted.items()
    }
    rows: list[Message] = []
    for scheduled in taken:
        result = results[scheduled.pk]
        if scheduled.pk not in phones_of:  # its template is unavailable
            continue
        if scheduled.account_id not in providers:
            providers[scheduled.account_id] = provider_for(scheduled.account).name
        template = templates.get((scheduled.account_id, scheduled.template_name, scheduled.template_language))
        made = _outbox_rows(
            scheduled,
            phones=phones_of[scheduled.pk],
            leads=leads[scheduled.account_id],
            template=template if scheduled.template_name else None,
            provider=providers[scheduled.account_id],
            result=result,
            now=now,
        )
        result.message_ids = [row.pk for row in made]
        result.queued = len(made)
        if not made:
            result.status = Status.FAILED
            result.error = (
                f"Nothing to send: {result.skipped_opted_out} opted out, {result.skipped_window_closed} outside the "
                f"24-hour window (send a template), {result.skipped_invalid} invalid or not yours to message."
            )
        rows.extend(made)
    # One row per (occurrence, lead) by a unique constraint: a duplicate can't slip in.
    Message.objects.bulk_create(rows, ignore_conflicts=True)
    return results


def _dispatch_batch(
    *, now: datetime, ids: list[int] | None = None, limit: int = DUE_BATCH
) -> dict[int, DispatchResult]:
    """Takes up to ``limit`` due occurrences (of ``ids``, or any), oldest first, and
    sends them, once, in one transaction: the rows are locked as they are read (on
    PostgreSQL, rows another dispatcher holds are skipped, so two clusters split the
    work; SQLite's write lock, taken when the transaction begins, serializes them),
    then the outbox messages, the claim with the counts (``sent``, or ``failed`` with
    the reason) and a recurring series' next occurrences are written, set-based.
    Delivery is handed to the worker after the commit, in batches across occurrences.
    Answers the results of the occurrences it took."""
    due = ScheduledMessage.objects.filter(status=Status.PENDING, scheduled_time__lte=now)
    if ids is not None:
        due = due.filter(pk__in=ids)
    with transaction.atomic():
        taken = list(
            due.select_for_update(skip_locked=True, of=("self",))
            .select_related("account", "created_by")
            .order_by("scheduled_time", "id")[:limit]
        )
        if not taken:
            return {}
        results = _outboxes(taken, now)
        _claims_write(results, now=now)
        for predecessor_id, following in _next_occurrences_create(taken, now=now).items():
            results[predecessor_id].next_occurrence = following
        queue_delivery_batch(message_id for result in results.values() for message_id in result.message_ids)
    return results


def _claims_write(results: dict[int, DispatchResult], *, now: datetime) -> None:
    """Marks the taken occurrences sent or failed, with their counts: one UPDATE per
    distinct outcome (most occurrences share one: sent, n queued, nothing skipped),
    rather than a CASE per row and column, which costs Django seconds per batch."""
    outcomes: dict[tuple, list[int]] = defaultdict(list)
    for pk, result in results.items():
        outcome = (
            result.status,
            result.error[:300],
            result.queued,
            result.skipped_opted_out,
            result.skipped_window_closed,
            result.skipped_invalid,
        )
        outcomes[outcome].append(pk)
    for (status, error, queued, opted_out, window_closed, invalid), ids in outcomes.items():
        ScheduledMessage.objects.filter(pk__in=ids).update(
            status=status,
            error=error,
            queued=queued,
            skipped_opted_out=opted_out,
            skipped_window_closed=window_closed,
            skipped_invalid=invalid,
            sent_at=now,
            updated_at=now,
        )


def scheduled_message_dispatch(*, scheduled_message_id: int, now: datetime | None = None) -> DispatchResult | None:
    """Sends one due occurrence, once (see ``_dispatch_batch``). Answers None when
    there is nothing to do (not due yet, already taken, cancelled, deleted), so a
    duplicate run is harmless."""
    results = _dispatch_batch(now=now or timezone.now(), ids=[scheduled_message_id], limit=1)
    return results.get(scheduled_message_id)


def scheduled_messages_dispatch_due(
    *, now: datetime | None = None, batch: int = DUE_BATCH, budget: float = DUE_BUDGET_SECONDS
) -> int:
    """Dispatches every pending occurrence whose time has come, oldest first, ``batch``
    at a time (each batch one transaction), until none is left or ``budget`` seconds
    have passed (the next run goes on from there). Run by the one-off schedule of each
    due second and, as the safety net, by the every-minute campaigns.tasks.dispatch_due;
    any number of them may run at once. A batch that raises is taken again one
    occurrence at a time, so one bad row is logged and left pending for the next run
    while the others go. Answers how many it dispatched."""
    now = now or timezone.now()
    started = time.monotonic()
    dispatched = 0
    failed: set[int] = set()
    while time.monotonic() - started < budget:
        try:
            if failed:  # rare: keep the known bad rows out of the batch
                candidates = _due_ids(now, exclude=failed, limit=batch)
                taken = _dispatch_batch(now=now, ids=candidates, limit=batch) if candidates else {}
            else:
                taken = _dispatch_batch(now=now, limit=batch)
        except Exception:
            logger.exception("dispatch of a batch of scheduled messages failed; taking them one at a time")
            for scheduled_message_id in _due_ids(now, exclude=failed, limit=batch):
                try:
                    result = scheduled_message_dispatch(scheduled_message_id=scheduled_message_id, now=now)
                except Exception:
                    logger.exception("dispatch of scheduled message %s failed", scheduled_message_id)
                    failed.add(scheduled_message_id)
                    continue
                dispatched += result is not None
            continue
        if not taken:
            break
        dispatched += len(taken)
    return dispatched


def _due_ids(now: datetime, *, exclude: set[int], limit: int) -> list[int]:
    return list(
        ScheduledMessage.objects.filter(status=Status.PENDING, scheduled_time__lte=now)
        .exclude(pk__in=exclude)
        .order_by("scheduled_time", "id")
        .values_list("pk", flat=True)[:limit]
    )


# --- Recurrence ----------------------------------------------------------------------------------


def _month_shift(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def next_occurrence_time(
    *, scheduled_time: datetime, series_start: datetime, recurrence: str, time_zone: str, after: datetime
) -> datetime | None:
    """The series' next occurrence strictly after both ``scheduled_time`` and
    ``after`` (occurrences missed while nothing ran are skipped, not sent in a burst).
    Daily and weekly keep the first occurrence's wall-clock time in the account's time
    zone across DST changes; monthly keeps its day of month too, on the month's last
    day when the month is shorter (31 Jan → 28/29 Feb → 31 Mar). None for "none"."""
    if recurrence == Recurrence.NONE:
        return None
    zone = zoneinfo.ZoneInfo(time_zone)
    anchor = series_start.astimezone(zone)
    wall = anchor.time().replace(tzinfo=None, fold=0)
    floor = max(scheduled_time, after)
    floor_local = floor.astimezone(zone)

    def at(day: date) -> datetime:
        # fold=0: a time skipped by the DST change moves forward by the gap; a
        # repeated one is its first occurrence.
        return datetime.combine(day, wall, tzinfo=zone).astimezone(UTC)

    if recurrence in (Recurrence.DAILY, Recurrence.WEEKLY):
        step = 1 if recurrence == Recurrence.DAILY else 7
        # Start a step before the floor's date: the loop then lands on the first one after it.
        k = max(0, (floor_local.date() - anchor.date()).days // step - 1)
        while True:
            candidate = at(anchor.date() + timedelta(days=k * step))
            if candidate > floor:
                return candidate
            k += 1
    months = max(0, (floor_local.year - anchor.year) * 12 + floor_local.month - anchor.month - 1)
    while True:
        year, month = _month_shift(anchor.year, anchor.month, months)
        candidate = at(date(year, month, min(anchor.day, calendar.monthrange(year, month)[1])))
        if candidate > floor:
            return candidate
        months += 1


def _next_occurrences_create(predecessors: list[ScheduledMessage], *, now: datetime) -> dict[int, ScheduledMessage]:
    """The recurring ones' successors, set-based, with the one-off schedules of their
    times; answers them by predecessor id. ``previous`` is one-to-one: a successor
    made already (a retried run, a manual close racing a dispatch) is left as it is and
    not answered."""
    recurring = [p for p in predecessors if p.recurrence != Recurrence.NONE]
    if not recurring:
        return {}
    made = set(
        ScheduledMessage.objects.filter(previous__in=[p.pk for p in recurring]).values_list("previous_id", flat=True)
    )
    followers = []
    for scheduled in recurring:
        if scheduled.pk in made:
            continue
        try:
            when = next_occurrence_time(
                scheduled_time=scheduled.scheduled_time,
                series_start=scheduled.series_start or scheduled.scheduled_time,
                recurrence=scheduled.recurrence,
                time_zone=scheduled.account.time_zone,
                after=now,
            )
        except (OverflowError, ValueError):  # past year 9999
            continue
        followers.append(
            ScheduledMessage(
                account_id=scheduled.account_id,
                message=scheduled.message,
                template_name=scheduled.template_name,
                template_language=scheduled.template_language,
                template_params=scheduled.template_params,
                recipients=scheduled.recipients,
                scheduled_time=when,
                series_start=scheduled.series_start or scheduled.scheduled_time,
                recurrence=scheduled.recurrence,
                previous_id=scheduled.pk,
                created_by_id=scheduled.created_by_id,
            )
        )
    if not followers:
        return {}
    ScheduledMessage.objects.bulk_create(followers, ignore_conflicts=True)  # one made meanwhile stays
    _dispatch_on_time({f.scheduled_time for f in followers})
    return {
        f.previous_id: f
        for f in ScheduledMessage.objects.filter(previous__in=[f.previous_id for f in followers]).select_related(
            "account"
        )
    }


def _next_occurrence_create(scheduled: ScheduledMessage, *, now: datetime) -> ScheduledMessage | None:
    """One recurring occurrence's successor (a manual close), as above."""
    return _next_occurrences_create([scheduled], now=now).get(scheduled.pk)
