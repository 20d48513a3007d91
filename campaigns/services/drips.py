"""Writes of drips: create, update and delete drips with their ordered steps, enroll
leads, stop enrollments, and the runner that sends due steps.

A drip is a sequence of steps (a delay, then a text or an approved template). Each
enrolled lead has one Enrollment that says which step is next and when it is due.
The runner (``enrollments_process_due``, called every minute by
campaigns.tasks.dispatch_due) stops enrollments whose lead opted out, replied or
converted, then turns due steps into outbox messages (messaging.Message rows,
unique per enrollment and step) and hands them to messaging's delivery, which sends
each one at most once.

Inputs are plain mappings with the model's field names, so the API, the dashboard's
forms and the Django admin share one set of rules; ``ValidationFailed`` carries
field errors keyed by those names (a step's by ``steps.<index>.<field>``).
"""

import logging
import time as monotonic_clock
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Account, User
from campaigns.models import Drip, DripStep, Enrollment
from campaigns.services import dispatcher_ensure
from campaigns.services.variables import render_param, render_variables, variables_check
from heroshhi.errors import DomainError, PermissionDenied, ValidationFailed
from heroshhi.text import clean_text
from leads.models import Lead
from leads.selectors import lead_scope
from messaging.models import Message, WhatsAppConnection
from messaging.providers import provider_for_connection
from messaging.services import (
    TemplateRef,
    TemplateUnavailable,
    _render_template_body,
    queue_delivery_batch,
    template_for_send,
    window_open,
)

MAX_STEPS = 50
MAX_DELAY_AMOUNT = 100_000  # DripStep.delay_amount's validator
MAX_TEXT = 4096  # WhatsApp's limit for a text body
MAX_NAME = 200
MAX_DESCRIPTION = 2000
MAX_TEMPLATE_NAME = 512
MAX_TEMPLATE_LANGUAGE = 16
MAX_TEMPLATE_PARAMS = 100
MAX_TEMPLATE_PARAM = 1024
MAX_ENROLL = 5000  # lead ids per enroll call, as the bulk lead routes
RUN_BATCH_SIZE = 500
# One run stops taking batches after this long; the next minute's run goes on.
RUN_SECONDS = 30.0
# A step waits while the enrollment's previous message is still queued, so steps
# reach the contact in order even when delivery lags (a broadcast draining, retries).
PREVIOUS_STEP_WAIT = timedelta(seconds=15)
# An enrollment whose step raised while being prepared is tried again this much later.
POISON_RETRY = timedelta(hours=1)
PROCESS_DUE_TASK = "campaigns.tasks.drips.process_due"
DELIVER_TASK = "campaigns.tasks.drips.deliver_step_messages"

logger = logging.getLogger(__name__)

UNITS = {
    DripStep.DelayUnit.MINUTES: timedelta(minutes=1),
    DripStep.DelayUnit.HOURS: timedelta(hours=1),
    DripStep.DelayUnit.DAYS: timedelta(days=1),
}
DRIP_FIELDS = ("name", "description", "is_active", "stop_on_reply", "stop_on_conversion")
WINDOW_FIELDS = ("send_window_start", "send_window_end")
STEP_FIELDS = ("delay_amount", "delay_unit", "text", "template_name", "template_language", "template_params")


class DripInactive(DomainError):
    status_code = 400
    code = "DRIP_INACTIVE"
    default_message = "This drip is inactive: activate it before enrolling leads."


def step_delay(step: DripStep) -> timedelta:
    return step.delay_amount * UNITS[step.delay_unit]


def drip_manage_check(*, user: User | None) -> None:
    """Admins manage drips (create, change, delete); agents may only use them."""
    if user is not None and not user.is_account_admin:
        raise PermissionDenied("Only account admins can manage drips.")


# --- Validation -------------------------------------------------------------------------


class _Errors:
    def __init__(self):
        self.fields: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        self.fields.setdefault(name, []).append(message)

    def raise_if_any(self) -> None:
        if self.fields:
            name, messages = next(iter(self.fields.items()))
            raise ValidationFailed(f"{name}: {messages[0]}", errors=self.fields)


def _int(value) -> int | None:
    """An integer, or a string of digits (a form's input); never a bool or a float."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 12:
        return int(value)
    return None


def _time(value) -> time | str | None:
    """A time of day from a ``time`` or "HH:MM"; the string "invalid" when it isn't one."""
    if value is None or isinstance(value, time):
        return value
    if isinstance(value, str) and len(value) == 5 and value[2] == ":":
        try:
            return time.fromisoformat(value)
        except ValueError:
            pass
    return "invalid"


def _variables_known(name: str, texts: list[str], errors: _Errors) -> bool:
    try:
        variables_check(field=name, texts=texts)
    except ValidationFailed as exc:
        for message in (exc.errors or {}).get(name, [exc.message]):
            errors.add(name, message)
        return False
    return True


def _clean_steps(account: Account, steps, errors: _Errors) -> list[DripStep]:
    if not isinstance(steps, list | tuple):
        errors.add("steps", "Give the steps as a list.")
        return []
    if not steps:
        errors.add("steps", "A drip needs at least one step.")
        return []
    if len(steps) > MAX_STEPS:
        errors.add("steps", f"At most {MAX_STEPS} steps.")
        return []
    templates: dict[tuple[str, str], object] = {}
    cleaned = []
    for index, raw in enumerate(steps):
        prefix = f"steps.{index}"
        if not isinstance(raw, Mapping):
            errors.add(prefix, "A step is an object with a delay and a text or a template.")
            continue
        amount = _int(raw.get("delay_amount", 0))
        if amount is None or not 0 <= amount <= MAX_DELAY_AMOUNT:
            errors.add(f"{prefix}.delay_amount", f"Give a whole number from 0 to {MAX_DELAY_AMOUNT}.")
        unit = raw.get("delay_unit", DripStep.DelayUnit.DAYS)
        if unit not in UNITS:
            errors.add(f"{prefix}.delay_unit", f"Use one of: {', '.join(UNITS)}.")
        text = raw.get("text") or ""
        template_name = raw.get("template_name") or ""
        language = raw.get("template_language") or ""
        params = raw.get("template_params") or []
        if not isinstance(text, str) or not isinstance(template_name, str) or not isinstance(language, str):
            errors.add(prefix, "The text and the template's name and language are strings.")
            continue
        if len(text) > MAX_TEXT:  # before cleaning: a huge text is refused, not processed
            errors.add(f"{prefix}.text", f"At most {MAX_TEXT} characters.")
            continue
        if len(template_name) > MAX_TEMPLATE_NAME or len(language) > MAX_TEMPLATE_LANGUAGE:
            errors.add(f"{prefix}.template_name", "No such template.")
            continue
        text = clean_text(text)
        template_name = template_name.strip()
        if bool(text) == bool(template_name):
            errors.add(f"{prefix}.text", "Give either a text or a template, not both.")
            continue
        step = DripStep(position=index, delay_amount=amount or 0, delay_unit=unit, text=text)
        if not _variables_known(f"{prefix}.text", [text], errors):
            continue
        if template_name:
            if (
                not isinstance(params, list | tuple)
                or len(params) > MAX_TEMPLATE_PARAMS
                or any(
                    isinstance(p, bool) or not isinstance(p, str | int | float) or len(str(p)) > MAX_TEMPLATE_PARAM
                    for p in params
                )
            ):
                errors.add(
                    f"{prefix}.template_params",
                    f"At most {MAX_TEMPLATE_PARAMS} parameters, each a string or a number of at most "
                    f"{MAX_TEMPLATE_PARAM} characters.",
                )
                continue
            if not _variables_known(f"{prefix}.template_params", [str(p) for p in params], errors):
                continue
            key = (template_name, language.strip())
            if key not in templates:
                try:
                    templates[key] = template_for_send(
                        account=account, ref=TemplateRef(name=template_name, language=language.strip())
                    )
                except TemplateUnavailable as exc:
                    templates[key] = exc
            template = templates[key]
            if isinstance(template, TemplateUnavailable):
                errors.add(f"{prefix}.template_name", template.message)
                continue
            step.template_name = template.name
            step.template_language = template.language
            step.template_params = [str(p) for p in params]
        cleaned.append(step)
    return cleaned


def drip_clean(*, account: Account, data: Mapping, drip: Drip | None = None) -> dict:
    """Checks a drip's fields and steps without writing anything; answers the cleaned
    values of the keys given. ``drip`` is the current drip for an update: keys left out
    keep their value (a send window is checked with the other end's current value).
    Steps are checked as a whole list, which replaces the drip's steps.

    Raises ValidationFailed with errors keyed by field (``steps.<index>.<field>`` for a
    step's), with every problem found, before anything is written."""
    errors = _Errors()
    clean: dict = {}
    if not isinstance(data, Mapping):
        raise ValidationFailed("Give the drip's fields.", errors={"name": ["Give the drip's fields."]})
    if drip is None:
        for required in ("name", "steps"):
            if required not in data:
                errors.add(required, "This field is required.")
    if "name" in data:
        name = data["name"]
        name = clean_text(name) if isinstance(name, str) and len(name) <= 10 * MAX_NAME else None
        if not name:
            errors.add("name", "Give the drip a name.")
        elif len(name) > MAX_NAME:
            errors.add("name", f"At most {MAX_NAME} characters.")
        else:
            clean["name"] = name
    if "description" in data:
        description = data["description"] or ""
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            errors.add("description", f"A text of at most {MAX_DESCRIPTION} characters.")
        else:
            clean["description"] = clean_text(description)
    for flag in ("is_active", "stop_on_reply", "stop_on_conversion"):
        if flag in data:
            if not isinstance(data[flag], bool):
                errors.add(flag, "Must be true or false.")
            else:
                clean[flag] = data[flag]
    if any(name in data for name in WINDOW_FIELDS):
        window = {}
        for name in WINDOW_FIELDS:
            value = _time(data[name]) if name in data else getattr(drip, name, None)
            if value == "invalid":
                errors.add(name, "Use a time of day as HH:MM, e.g. 09:00.")
            window[name] = value
        start, end = window["send_window_start"], window["send_window_end"]
        if "invalid" not in (start, end):
            if (start is None) != (end is None):
                errors.add("send_window_end" if end is None else "send_window_start", "Give both ends of the window.")
            elif start is not None and start == end:
                errors.add("send_window_end", "The window must not start and end at the same time.")
            else:
                clean.update(window)
    if "steps" in data:
        clean["steps"] = _clean_steps(account, data["steps"], errors)
    errors.raise_if_any()
    return clean


# --- Create, update, delete -------------------------------------------------------------


def _steps_replace(drip: Drip, steps: list[DripStep]) -> None:
    """The drip's steps become ``steps``, in order. Enrollments keep their next step's
    position and due time: from their next step on, they follow the new steps."""
    DripStep.objects.filter(drip=drip).delete()
    for position, step in enumerate(steps):
        step.drip, step.position = drip, position
    DripStep.objects.bulk_create(steps)


def drip_create(*, account: Account, user: User | None, data: Mapping) -> Drip:
    """A drip with its steps, in one transaction. Admins only (``user`` None: the
    platform's own staff, e.g. the Django admin)."""
    drip_manage_check(user=user)
    clean = drip_clean(account=account, data=data)
    steps = clean.pop("steps")
    with transaction.atomic():
        drip = Drip.objects.create(account=account, created_by=user, **clean)
        _steps_replace(drip, steps)
    dispatcher_ensure()
    return drip


def drip_update(*, drip: Drip, user: User | None, data: Mapping) -> Drip:
    """Changes the fields given; ``steps``, when given, replace the drip's steps as a
    whole. Everything is checked before anything is written, and written in one
    transaction: a refused update leaves the drip and its steps as they were."""
    drip_manage_check(user=user)
    clean = drip_clean(account=drip.account, data=data, drip=drip)
    steps = clean.pop("steps", None)
    with transaction.atomic():
        locked = Drip.objects.select_for_update().get(pk=drip.pk)  # one editor at a time
        for name, value in clean.items():
            setattr(locked, name, value)
        locked.save()
        if steps is not None:
            _steps_replace(locked, steps)
    for name in (*DRIP_FIELDS, *WINDOW_FIELDS, "updated_at"):
        setattr(drip, name, getattr(locked, name))
    if hasattr(drip, "_prefetched_objects_cache"):
        drip._prefetched_objects_cache.pop("steps", None)
    return drip


def _drop_unsent(enrollments) -> int:
    """Deletes the still-unclaimed queued messages of these enrollments: a stopped or
    deleted sequence sends nothing more. A message a worker has claimed is left to it.
    The conditions sit on the message row itself (no join), so a claim racing this
    delete is seen by the database's re-check."""
    deleted, _ = Message.objects.filter(
        enrollment_id__in=enrollments.values("pk"),
        status=Message.Status.QUEUED,
        claimed_at__isnull=True,
        wamid__isnull=True,
    ).delete()
    return deleted


def drip_delete(*, drip: Drip, user: User | None) -> None:
    """Deletes the drip, its steps and enrollments; its unsent messages are dropped,
    the messages already sent stay in the conversations."""
    drip_manage_check(user=user)
    with transaction.atomic():
        _drop_unsent(Enrollment.objects.filter(drip=drip))
        drip.delete()


# --- Enrollment -------------------------------------------------------------------------


@dataclass
class EnrollResult:
    requested: int = 0
    enrolled: int = 0
    already: int = 0
    skipped_opted_out: int = 0
    skipped_converted: int = 0
    invalid: int = 0


def drip_enroll(*, drip: Drip, user: User, lead_ids: Iterable, now: datetime | None = None) -> EnrollResult:
    """Enrolls the leads the user can see. Set-based: one query loads the leads, one
    finds those already active in this drip, one INSERT adds the rest (the partial
    unique constraint ``campaigns_enrollment_one_active`` makes a concurrent duplicate
    a no-op) and one counts what was really inserted.

    Skipped and counted: ids naming no lead the user can see (``invalid``), opted-out
    leads, converted leads when the drip stops on conversion, and leads already active
    in the drip (``already``: nothing happens to them). The first step is due at the
    enrollment time plus its delay."""
    if not drip.is_active:
        raise DripInactive()
    now = now or timezone.now()
    wanted = list(dict.fromkeys(lead_ids))
    if len(wanted) > MAX_ENROLL:
        raise ValidationFailed(
            f"leadIds: At most {MAX_ENROLL} leads at a time.", errors={"leadIds": [f"At most {MAX_ENROLL} leads."]}
        )
    result = EnrollResult(requested=len(wanted))
    leads = list(
        lead_scope(user=user)
        .filter(account_id=drip.account_id, pk__in=wanted)
        .values_list("pk", "is_opted_out", "status")
    )
    result.invalid = len(wanted) - len(leads)
    candidates = []
    for lead_id, opted_out, status in leads:
        if opted_out:
            result.skipped_opted_out += 1
        elif drip.stop_on_conversion and status == Lead.Status.CONVERTED:
            result.skipped_converted += 1
        else:
            candidates.append(lead_id)
    if not candidates:
        return result
    first = min(drip.steps.all(), key=lambda step: step.position, default=None)  # prefetched by drip_get
    due = now + (step_delay(first) if first else timedelta(0))
    with transaction.atomic():
        active = Enrollment.objects.filter(drip=drip, status=Enrollment.Status.ACTIVE)
        already = set(active.filter(lead_id__in=candidates).values_list("lead_id", flat=True))
        new = [lead_id for lead_id in candidates if lead_id not in already]
        Enrollment.objects.bulk_create(
            [
                Enrollment(
                    account_id=drip.account_id,
                    drip=drip,
                    lead_id=lead_id,
                    enrolled_by=user,
                    enrolled_at=now,
                    next_step=0,
                    next_due_at=due,
                )
                for lead_id in new
            ],
            ignore_conflicts=True,
        )
        # A concurrent call may have enrolled some of them meanwhile: count ours.
        result.enrolled = active.filter(lead_id__in=new, enrolled_at=now).count() if new else 0
        result.already = len(candidates) - result.enrolled
        if result.enrolled and due <= now:
            # The first step is due now: don't wait for the next minute's dispatch.
            transaction.on_commit(_queue_process_due)
    dispatcher_ensure()
    return result


def _queue_process_due() -> None:
    from django_q.tasks import async_task

    async_task(PROCESS_DUE_TASK)


def enrollments_stop(
    *,
    enrollment_ids: Iterable,
    drip: Drip | None = None,
    reason: str = Enrollment.StopReason.CANCELLED,
    now: datetime | None = None,
) -> int:
    """Stops the active enrollments among these ids (of ``drip``, when given) in one
    UPDATE and drops their unsent messages. Finished ones are left as they are.
    Answers how many stopped. The caller has checked the user may see them."""
    enrollments = Enrollment.objects.filter(pk__in=list(enrollment_ids))
    if drip is not None:
        enrollments = enrollments.filter(drip=drip)
    with transaction.atomic():
        stopped = enrollments.filter(status=Enrollment.Status.ACTIVE).update(
            status=Enrollment.Status.STOPPED, stop_reason=reason, finished_at=now or timezone.now(), next_due_at=None
        )
        if stopped:
            _drop_unsent(enrollments.filter(status=Enrollment.Status.STOPPED))
    return stopped


# --- The runner -------------------------------------------------------------------------


def _stopped(reason: str, now: datetime) -> dict:
    return {
        "status": Enrollment.Status.STOPPED,
        "stop_reason": reason,
        "finished_at": now,
        "next_due_at": None,
    }


def _sweep(condition: Q, reason: str, now: datetime) -> int:
    """One UPDATE stopping the active enrollments that match ``condition`` (which
    joins the lead and the drip). The join sits in a subquery and the status test on
    the row itself, so a row finished meanwhile by another runner is not overwritten."""
    matching = Enrollment.objects.filter(condition, status=Enrollment.Status.ACTIVE).values("pk")
    return Enrollment.objects.filter(pk__in=matching, status=Enrollment.Status.ACTIVE).update(**_stopped(reason, now))


def enrollments_stop_sweep(*, now: datetime | None = None) -> dict:
    """Stops, over all active enrollments, one UPDATE each: leads who opted out; leads
    who wrote after enrolling, when the drip stops on reply; converted leads, when the
    drip stops on conversion."""
    now = now or timezone.now()
    return {
        Enrollment.StopReason.OPTED_OUT: _sweep(Q(lead__is_opted_out=True), Enrollment.StopReason.OPTED_OUT, now),
        Enrollment.StopReason.REPLIED: _sweep(
            Q(drip__stop_on_reply=True, lead__last_inbound_at__gt=F("enrolled_at")),
            Enrollment.StopReason.REPLIED,
            now,
        ),
        Enrollment.StopReason.CONVERTED: _sweep(
            Q(drip__stop_on_conversion=True, lead__status=Lead.Status.CONVERTED),
            Enrollment.StopReason.CONVERTED,
            now,
        ),
    }


def _stop_reason(enrollment: Enrollment) -> str | None:
    """The sweep's rules for one loaded enrollment (the lead may have changed since)."""
    lead, drip = enrollment.lead, enrollment.drip
    if lead.is_opted_out:
        return Enrollment.StopReason.OPTED_OUT
    if drip.stop_on_reply and lead.last_inbound_at and lead.last_inbound_at > enrollment.enrolled_at:
        return Enrollment.StopReason.REPLIED
    if drip.stop_on_conversion and lead.status == Lead.Status.CONVERTED:
        return Enrollment.StopReason.CONVERTED
    return None


def window_next_start(drip: Drip, zone: zoneinfo.ZoneInfo, now: datetime) -> datetime | None:
    """None when ``now`` is inside the drip's daily send window (or it has none);
    otherwise the window's next start. Times are the account's wall-clock time; a
    window whose start is after its end runs overnight (20:00 to 08:00)."""
    start, end = drip.send_window_start, drip.send_window_end
    if start is None or end is None:
        return None
    local = now.astimezone(zone)
    moment = local.time().replace(tzinfo=None)
    inside = start <= moment < end if start < end else (moment >= start or moment < end)
    if inside:
        return None
    day = local.date() if moment < start else local.date() + timedelta(days=1)
    return datetime.combine(day, start, tzinfo=zone)


@dataclass
class _Batch:
    """What one batch decided: the messages to insert and, per change, the enrollments
    it applies to (one UPDATE per distinct change, not per enrollment)."""

    messages: list = field(default_factory=list)
    changes: dict = field(default_factory=lambda: defaultdict(list))
    sent_ids: dict = field(default_factory=dict)  # message id → enrollment id

    def change(self, enrollment_id, **values) -> None:
        self.changes[tuple(sorted(values.items(), key=lambda item: item[0]))].append(enrollment_id)


def _take_due(now: datetime, batch_size: int) -> list[Enrollment]:
    due = (
        Enrollment.objects.filter(status=Enrollment.Status.ACTIVE, next_due_at__lte=now, drip__is_active=True)
        .select_related("drip", "lead__assigned_to", "account")
        .order_by("next_due_at", "pk")
    )
    if connection.features.has_select_for_update_skip_locked:
        # Two runners take different rows; only the enrollment rows are locked.
        due = due.select_for_update(skip_locked=True, of=("self",))
    return list(due[:batch_size])


def _process_batch(now: datetime, batch_size: int) -> tuple[int, int]:
    """Takes up to ``batch_size`` due enrollments and, in one transaction, creates
    their messages and advances them. Answers (enrollments taken, messages queued)."""
    with transaction.atomic():
        enrollments = _take_due(now, batch_size)
        if not enrollments:
            return 0, 0
        ids = [e.pk for e in enrollments]
        drip_ids = {e.drip_id for e in enrollments}
        steps = {(s.drip_id, s.position): s for s in DripStep.objects.filter(drip_id__in=drip_ids)}
        waiting = set(
            Message.objects.filter(enrollment_id__in=ids, status=Message.Status.QUEUED).values_list(
                "enrollment_id", flat=True
            )
        )
        # The provider of each account in the batch, from one query (messaging decides).
        account_ids = {e.account_id for e in enrollments}
        connections = {c.account_id: c for c in WhatsAppConnection.objects.filter(account_id__in=account_ids)}
        providers = {pk: provider_for_connection(connections.get(pk)).name for pk in account_ids}
        batch = _Batch()
        templates: dict = {}
        zones: dict = {}
        for enrollment in enrollments:
            try:
                _decide(enrollment, now, steps, waiting, batch, providers, templates, zones)
            except Exception:
                # One broken row (a malformed template, say) must not stall every drip:
                # it is set aside for an hour with the reason, the others go on.
                logger.exception("drip enrollment %s could not be processed", enrollment.pk)
                batch.change(
                    enrollment.pk,
                    next_due_at=now + POISON_RETRY,
                    last_error="This step could not be prepared (server error); it is tried again later.",
                )
        Message.objects.bulk_create(batch.messages, ignore_conflicts=True)
        # A step's message may exist already (unique per enrollment and step): only
        # the rows really inserted are counted and delivered.
        inserted = set(Message.objects.filter(pk__in=list(batch.sent_ids)).values_list("pk", flat=True))
        counted = defaultdict(list)
        for message in batch.messages:
            if message.pk in inserted:
                counted[message.enrollment_id].append(message.pk)
        for key, enrollment_ids in batch.changes.items():
            values = dict(key)
            sent = values.pop("_sent", False)
            if sent:
                # Steps whose message turned out to exist already are not counted again.
                new = [i for i in enrollment_ids if counted.get(i)]
                old = [i for i in enrollment_ids if not counted.get(i)]
                if new:
                    Enrollment.objects.filter(pk__in=new).update(**values, steps_sent=F("steps_sent") + 1)
                if old:
                    Enrollment.objects.filter(pk__in=old).update(**values)
            else:
                Enrollment.objects.filter(pk__in=enrollment_ids).update(**values)
        message_ids = [m.pk for m in batch.messages if m.pk in inserted]
        queue_delivery_batch(message_ids, task=DELIVER_TASK)
    return len(enrollments), len(message_ids)


def _decide(enrollment, now, steps, waiting, batch: _Batch, providers, templates, zones) -> None:
    """What to do with one due enrollment, from rows loaded for the whole batch."""
    reason = _stop_reason(enrollment)
    if reason:
        batch.change(enrollment.pk, **_stopped(reason, now))
        return
    drip, lead, account = enrollment.drip, enrollment.lead, enrollment.account
    step = steps.get((drip.pk, enrollment.next_step))
    if step is None:  # no more steps (the drip was shortened): done
        batch.change(
            enrollment.pk, status=Enrollment.Status.COMPLETED, finished_at=now, next_due_at=None, last_error=""
        )
        return
    if enrollment.pk in waiting:  # the previous step's message has not gone out yet
        batch.change(enrollment.pk, next_due_at=now + PREVIOUS_STEP_WAIT)
        return
    if account.pk not in zones:
        try:
            zones[account.pk] = zoneinfo.ZoneInfo(account.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):  # validated on save; never stall on it
            zones[account.pk] = zoneinfo.ZoneInfo("UTC")
    opens = window_next_start(drip, zones[account.pk], now)
    if opens is not None:
        batch.change(enrollment.pk, next_due_at=opens)
        return

    error = ""
    message = None
    if step.template_name:
        key = (account.pk, step.template_name, step.template_language)
        if key not in templates:
            try:
                templates[key] = template_for_send(
                    account=account, ref=TemplateRef(name=step.template_name, language=step.template_language)
                )
            except TemplateUnavailable as exc:
                templates[key] = exc
        template = templates[key]
        params = [render_param(str(p), lead=lead) for p in step.template_params]
        if isinstance(template, TemplateUnavailable):
            error = f"Step {step.position + 1} skipped: {template.message}"
        elif None in params:
            error = (
                f"Step {step.position + 1} skipped: a template parameter is empty (or too long) for this lead, "
                "and WhatsApp refuses those."
            )
        else:
            message = Message(
                type=Message.Type.TEMPLATE,
                template_name=template.name,
                template_language=template.language,
                template_params=params,
                body=_render_template_body(template, params),
            )
    elif not window_open(lead, now=now):
        error = (
            f"Step {step.position + 1} skipped: the 24-hour window is closed (the contact has not written in the "
            "last 24 hours); use a template step."
        )
    else:
        message = Message(type=Message.Type.TEXT, body=render_variables(step.text, lead=lead))

    following = steps.get((drip.pk, step.position + 1))
    advance = {"next_step": step.position + 1, "last_error": error[:300]}
    if following is None:
        advance.update(status=Enrollment.Status.COMPLETED, finished_at=now, next_due_at=None)
    else:
        advance["next_due_at"] = now + step_delay(following)
    if message is None:
        batch.change(enrollment.pk, **advance, steps_skipped=F("steps_skipped") + 1)
        return
    message.account = account
    message.lead = lead
    message.direction = Message.Direction.OUTBOUND
    message.status = Message.Status.QUEUED
    message.source = Message.Source.DRIP
    message.provider = providers[account.pk]
    message.sent_by_id = enrollment.enrolled_by_id
    message.enrollment = enrollment
    message.drip_step = step.position
    batch.messages.append(message)
    batch.sent_ids[message.pk] = enrollment.pk
    batch.change(enrollment.pk, **advance, _sent=True)


def enrollments_process_due(*, now: datetime | None = None, batch_size: int = RUN_BATCH_SIZE) -> int:
    """The runner, every minute (campaigns.tasks.dispatch_due): the stop sweeps, then
    due enrollments in batches, each in its own transaction. Answers how many
    messages it queued. Safe to run twice at once or again: rows are taken with
    ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite runs one writer at a
    time), and a step's message is unique per enrollment and step."""
    now = now or timezone.now()
    enrollments_stop_sweep(now=now)
    queued = 0
    deadline = monotonic_clock.monotonic() + RUN_SECONDS
    while monotonic_clock.monotonic() < deadline:
        taken, created = _process_batch(now, batch_size)
        queued += created
        if taken < batch_size:
            break
    return queued
