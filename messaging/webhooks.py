"""Meta's WhatsApp webhook: the subscription handshake, signed deliveries and their
processing — inbound messages, delivery statuses, opt-out words, marketing
preferences, coexistence echoes and template status changes.

Receiving (``webhook_receive``): the raw body is parsed only to learn which numbers it
names; it is then checked against ``X-Hub-Signature-256`` with the app secret of each
named connection, and nothing is written unless a connection vouches for it. Changes of
a number whose secret does not match are never applied (a tenant who knows their own
app secret can't write into another tenant's account by naming its number).

Storing and processing: a small delivery is processed and recorded as a processed
``WebhookEvent`` in one transaction, so Meta gets its 200 only once both are committed
(a crash before the commit leaves nothing, and Meta retries). A delivery that is too
large for the request, or whose processing raised, is stored unprocessed and picked up
by a worker; ``webhook_events_process_pending`` (scheduled in the same transaction)
sweeps whatever is left.

Processing is idempotent — Meta retries for days and sends events out of order: the
wamid is the key of an inbound message (a second copy is skipped, and so are its side
effects), statuses never move backwards, lead timestamps only move forward.
Everything is scoped to the account of the connection the change names.
"""

import hashlib
import hmac
import json
import logging
import string
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import OperationalError, transaction
from django.db import connection as db_connection
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from heroshhi.errors import DomainError
from heroshhi.text import clean_text
from leads.models import Engagement, Lead
from leads.phones import InvalidPhone, to_e164
from leads.services import engagement_log, lead_opt_in, lead_opt_out
from messaging.models import Message, Template, WebhookEvent, WhatsAppConnection
from messaging.providers import UNKNOWN_OUTCOME_CODES
from messaging.services import verify_token_digest

logger = logging.getLogger(__name__)

# Always honoured; settings.OPT_OUT_WORDS / OPT_IN_WORDS add more.
BASE_OPT_OUT_WORDS = ("STOP", "UNSUBSCRIBE")
BASE_OPT_IN_WORDS = ("START",)
MARKETING_STOP_REASON = "Stopped marketing messages on WhatsApp"
META_MARKETING_STOPPED = "131050"
SWEEP_SCHEDULE_NAME = "messaging: pending WhatsApp webhook events"
# Statuses of one delivery are applied in chunks of this many wamids (query size).
STATUS_CHUNK = 500
MAX_CHALLENGE_LENGTH = 1024

_CONNECTION_FIELDS = (
    "id",
    "account_id",
    "phone_number_id",
    "waba_id",
    "app_secret",
    "coexistence_enabled",
    "record_app_echoes",
    "sync_app_contacts",
)


class WebhookPayloadInvalid(DomainError):
    status_code = 400
    code = "INVALID_JSON"
    default_message = "The body is not a WhatsApp webhook payload (malformed JSON)."


class WebhookSignatureInvalid(DomainError):
    status_code = 401
    code = "SIGNATURE_INVALID"
    default_message = "The X-Hub-Signature-256 header is missing or does not match the app secret."


class VerifyTokenInvalid(DomainError):
    status_code = 403
    code = "VERIFY_TOKEN_INVALID"
    default_message = "The verify token does not match any WhatsApp connection."


# --- Handshake and signature --------------------------------------------------------------


def webhook_verify(*, mode: str, token: str, challenge: str) -> str:
    """Meta's subscription handshake: answers the challenge when the verify token is
    one of ours (stored as a SHA-256 digest, matched against every connection)."""
    if (
        mode != "subscribe"
        or not token
        or not challenge
        or len(challenge) > MAX_CHALLENGE_LENGTH
        or not WhatsAppConnection.objects.filter(verify_token_hash=verify_token_digest(token)).exists()
    ):
        raise VerifyTokenInvalid()
    return challenge


def signature_valid(*, body: bytes, header: str, secret: str) -> bool:
    """``header`` is ``sha256=<hex>``: HMAC-SHA256 of the raw body with the app secret,
    compared in constant time."""
    scheme, _, given = (header or "").partition("=")
    given = given.strip().lower()
    if scheme.strip().lower() != "sha256" or not given or not given.isascii() or not secret:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


# --- Receiving --------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    event_id: int
    processed: bool


def webhook_receive(*, body: bytes, signature: str) -> Receipt:
    """Checks, stores and (when small) processes one delivery. Raises
    WebhookPayloadInvalid (400) or WebhookSignatureInvalid (401) before writing
    anything."""
    payload = _parse(body)
    connections = _verified_connections(payload, body=body, signature=signature)
    text = body.decode()
    numbers = sorted({c.phone_number_id for c in connections})
    if _item_count(payload) > settings.WHATSAPP_WEBHOOK_INLINE_MAX_ITEMS:
        with transaction.atomic():
            event = WebhookEvent.objects.create(payload=text, phone_number_ids=numbers)
            webhook_sweep_schedule()
            transaction.on_commit(lambda: _queue_event(event.pk))
        return Receipt(event_id=event.pk, processed=False)
    error = ""
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                process_payload(payload, connections)
                event = WebhookEvent.objects.create(payload=text, phone_number_ids=numbers, processed_at=timezone.now())
            return Receipt(event_id=event.pk, processed=True)
        except OperationalError as exc:  # a deadlock or lock timeout: worth one more try
            error = f"{type(exc).__name__}: {exc}"
            logger.warning("WhatsApp webhook processing attempt %s failed: %s", attempt, exc)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            logger.exception("WhatsApp webhook processing failed; stored for the sweeper")
            break
    # Processing failed: keep the delivery (Meta won't send it again once answered)
    # and let a worker try later.
    with transaction.atomic():
        event = WebhookEvent.objects.create(payload=text, phone_number_ids=numbers, error=error[:2000])
        webhook_sweep_schedule()
    return Receipt(event_id=event.pk, processed=False)


def _parse(body: bytes) -> dict:
    try:
        payload = json.loads(body.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WebhookPayloadInvalid() from None
    if not isinstance(payload, dict) or not isinstance(payload.get("entry", []), list):
        raise WebhookPayloadInvalid("The body is not a WhatsApp webhook payload (no entry list).")
    return payload


def _changes(payload: dict) -> Iterable[tuple[str, str, dict]]:
    """(WABA id, field, value) of every change, skipping anything malformed."""
    for entry in _as_list(payload.get("entry")):
        entry = _as_dict(entry)
        waba_id = _text(entry.get("id"), 64)
        for change in _as_list(entry.get("changes")):
            change = _as_dict(change)
            value = _as_dict(change.get("value"))
            if value:
                yield waba_id, _text(change.get("field"), 64), value


def _phone_number_id(value: dict) -> str:
    return _text(_as_dict(value.get("metadata")).get("phone_number_id"), 64)


def _verified_connections(payload: dict, *, body: bytes, signature: str) -> list[WhatsAppConnection]:
    """The connections named by the payload whose app secret signed it."""
    numbers: set[str] = set()
    wabas: set[str] = set()
    for waba_id, _field, value in _changes(payload):
        number = _phone_number_id(value)
        if number:
            numbers.add(number)
        elif waba_id:  # template and account changes name the WABA, not a number
            wabas.add(waba_id)
    if (not numbers and not wabas) or not signature:
        raise WebhookSignatureInvalid()
    named = WhatsAppConnection.objects.filter(Q(phone_number_id__in=numbers) | Q(waba_id__in=wabas)).only(
        *_CONNECTION_FIELDS
    )
    verified = [c for c in named if signature_valid(body=body, header=signature, secret=c.app_secret)]
    if not verified:
        raise WebhookSignatureInvalid()
    return verified


def _item_count(payload: dict) -> int:
    count = 0
    for _waba, _field, value in _changes(payload):
        for key in ("messages", "statuses", "message_echoes", "user_preferences"):
            count += len(_as_list(value.get(key)))
    return count


def _queue_event(event_id: int) -> None:
    from django_q.tasks import async_task

    async_task("messaging.tasks.process_webhook_event", event_id)


def webhook_sweep_schedule(*, delay: float | None = None, again: bool = False) -> None:
    """Schedules one run of the sweeper, in the caller's transaction: an unprocessed
    event and the promise to process it commit together. Skipped when a run is
    already scheduled, unless ``again`` (the sweeper itself, whose own schedule is
    being removed as it runs)."""
    from django_q.models import Schedule

    if not again and Schedule.objects.filter(name=SWEEP_SCHEDULE_NAME).exists():
        return
    wait = settings.WHATSAPP_WEBHOOK_SWEEP_AFTER + 5 if delay is None else delay
    Schedule.objects.create(
        name=SWEEP_SCHEDULE_NAME,
        func="messaging.tasks.process_pending_webhook_events",
        schedule_type=Schedule.ONCE,
        next_run=timezone.now() + timedelta(seconds=wait),
    )


# --- Stored events ----------------------------------------------------------------------


def webhook_event_process(*, event_id: int) -> bool:
    """Processes one stored event, once: the row is locked (skipped if another worker
    holds it) and marked processed in the same transaction. Answers whether it ran."""
    with transaction.atomic():
        event = (
            WebhookEvent.objects.select_for_update(skip_locked=True)
            .filter(pk=event_id, processed_at__isnull=True)
            .first()
        )
        if event is None:
            return False
        try:
            payload = json.loads(event.payload)
        except ValueError:
            payload = {}
        connections = list(
            WhatsAppConnection.objects.filter(phone_number_id__in=event.phone_number_ids or []).only(
                *_CONNECTION_FIELDS
            )
        )
        if isinstance(payload, dict) and connections:
            process_payload(payload, connections)
        WebhookEvent.objects.filter(pk=event.pk).update(processed_at=timezone.now(), error="")
    return True


def webhook_events_pending(*, older_than: float | None = None):
    """Stored events still unprocessed, received more than ``older_than`` seconds ago
    (WHATSAPP_WEBHOOK_SWEEP_AFTER by default) and within the retry window."""
    now = timezone.now()
    wait = settings.WHATSAPP_WEBHOOK_SWEEP_AFTER if older_than is None else older_than
    return WebhookEvent.objects.filter(
        processed_at__isnull=True,
        received_at__lte=now - timedelta(seconds=wait),
        received_at__gte=now - timedelta(days=settings.WHATSAPP_WEBHOOK_RETRY_DAYS),
    )


@dataclass(frozen=True)
class SweepResult:
    processed: int
    failed: int


def webhook_events_process_pending(*, older_than: float | None = None, limit: int = 500) -> SweepResult:
    """The sweeper: processes stored events that nobody processed (processing raised,
    a worker died, a queued task was lost), oldest first."""
    ids = list(
        webhook_events_pending(older_than=older_than).order_by("received_at").values_list("pk", flat=True)[:limit]
    )
    processed = failed = 0
    for event_id in ids:
        try:
            processed += webhook_event_process(event_id=event_id)
        except Exception as exc:
            failed += 1
            logger.exception("WhatsApp webhook event %s failed again", event_id)
            WebhookEvent.objects.filter(pk=event_id).update(error=f"{type(exc).__name__}: {exc}"[:2000])
    return SweepResult(processed=processed, failed=failed)


def webhook_events_prune(*, days: int = 30) -> int:
    """Deletes processed events older than ``days`` (audit trail kept that long)."""
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = WebhookEvent.objects.filter(processed_at__isnull=False, received_at__lt=cutoff).delete()
    return deleted


# --- Processing -------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusUpdate:
    """One entry of ``statuses[]``. ``reference`` is Meta's echo of our
    ``biz_opaque_callback_data`` (the Message id)."""

    wamid: str
    status: str
    at: datetime
    reference: str = ""
    error_code: str = ""
    error_title: str = ""


@dataclass
class _Work:
    """What one delivery asks of one connection."""

    connection: WhatsAppConnection
    names: dict[str, str] = field(default_factory=dict)  # wa_id → profile name
    messages: list[dict] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    echoes: list[dict] = field(default_factory=list)
    preferences: list[dict] = field(default_factory=list)
    templates: list[dict] = field(default_factory=list)


def process_payload(payload: dict, connections: list[WhatsAppConnection]) -> None:
    """Applies a verified delivery to the given connections' accounts. Changes naming
    any other number are ignored. Call inside a transaction."""
    by_number = {c.phone_number_id: c for c in connections}
    by_waba: dict[str, list[WhatsAppConnection]] = defaultdict(list)
    for connection in connections:
        by_waba[connection.waba_id].append(connection)
    work: dict[int, _Work] = {}
    for waba_id, field_name, value in _changes(payload):
        number = _phone_number_id(value)
        targets = [by_number[number]] if number in by_number else ([] if number else by_waba.get(waba_id, []))
        for connection in targets:
            item = work.setdefault(connection.pk, _Work(connection))
            _collect(item, field_name, value)
    for item in work.values():
        _process_work(item)


def _collect(item: _Work, field_name: str, value: dict) -> None:
    for contact in _as_list(value.get("contacts")):
        contact = _as_dict(contact)
        wa_id = _text(contact.get("wa_id"), 32)
        name = _text(_as_dict(contact.get("profile")).get("name"), 200)
        if wa_id and name:
            item.names[wa_id] = name
    item.messages.extend(m for m in _as_list(value.get("messages")) if isinstance(m, dict))
    item.echoes.extend(m for m in _as_list(value.get("message_echoes")) if isinstance(m, dict))
    item.preferences.extend(p for p in _as_list(value.get("user_preferences")) if isinstance(p, dict))
    for raw in _as_list(value.get("statuses")):
        status = _status_update(_as_dict(raw))
        if status:
            item.statuses.append(status)
    if field_name == "message_template_status_update":
        item.templates.append(value)
    for error in _as_list(value.get("errors")):
        logger.warning("WhatsApp webhook error for %s: %s", item.connection.phone_number_id, error)


def _status_update(raw: dict) -> StatusUpdate | None:
    wamid = _text(raw.get("id"), 128)
    status = _text(raw.get("status"), 16).lower()
    if not wamid or not status:
        return None
    first_error = _as_dict(next(iter(_as_list(raw.get("errors"))), None))
    return StatusUpdate(
        wamid=wamid,
        status=status,
        at=_timestamp(raw.get("timestamp")),
        reference=_text(raw.get("biz_opaque_callback_data"), 512),
        error_code=_text(first_error.get("code"), 20),
        error_title=_text(first_error.get("title") or first_error.get("message"), 300),
    )


def _process_work(item: _Work) -> None:
    connection = item.connection
    if item.statuses:
        message_statuses_apply(account_id=connection.account_id, updates=item.statuses)
        _marketing_stopped_failures(connection, item.statuses)
    if item.messages:
        _record_inbound(connection, item.messages, item.names)
    if item.echoes and connection.coexistence_enabled and connection.record_app_echoes:
        _record_echoes(connection, item.echoes)
    if item.preferences:
        _apply_preferences(connection, item.preferences, item.names)
    if item.templates:
        _apply_template_statuses(connection, item.templates)


# --- Statuses (set-based) -----------------------------------------------------------------

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
# Not a status of its own: a message we failed for want of Meta's answer (TIMEOUT,
# UNKNOWN_OUTCOME — the request went out, the answer was lost). Meta's status decides:
# it moves on like a queued message (and loses its error), or fails with Meta's error.
_UNKNOWN = "failed-unknown"
_STATES = (*_RANK, Message.Status.FAILED, _UNKNOWN)
_FAILABLE = (Message.Status.QUEUED, Message.Status.SENT, _UNKNOWN)


def _implied_stamps(status: str) -> list[str]:
    """The timestamps a status fills when missing: `read` implies sent and delivered."""
    if status == Message.Status.FAILED:
        return [_STAMP[status]]
    rank = _RANK.get(status, 0)
    return [_STAMP[s] for s, r in _RANK.items() if 0 < r <= rank]


@dataclass(frozen=True)
class _Plan:
    """What a sequence of statuses (in order) does to a message, whatever its state:
    ``moves`` (start → end) for each state that changes, ``failure`` the index of the
    `failed` event whose error is recorded (it applies from queued and sent alike:
    their paths merge at the first event ranked above them), ``stamps`` the index of
    the first event that fills each timestamp. ``moves_on``: whether a message of
    unknown outcome is moved on by a status (sent, delivered, read) before any
    failure, which clears its failed_at; ``refill`` then the index of a later `failed`
    that fills failed_at again (as a failure after a delivery does), or None."""

    moves: tuple[tuple[str, str], ...]
    failure: int | None
    stamps: tuple[tuple[str, int], ...]
    moves_on: bool = False
    refill: int | None = None


@lru_cache(maxsize=1024)
def _plan(kinds: tuple[str, ...]) -> _Plan:
    moves = []
    for start in _STATES:
        end, _ = _simulate(kinds, start)
        if end != start:
            moves.append((start, end))
    stamps: dict[str, int] = {}
    for index, kind in enumerate(kinds):
        for stamp in _implied_stamps(kind):
            stamps.setdefault(stamp, index)  # the first event that implies it wins, as in order
    # A message of unknown outcome: the first status that counts decides (a failure
    # fails it with Meta's error; sent, delivered or read move it on).
    first = next((i for i, kind in enumerate(kinds) if kind == Message.Status.FAILED or _RANK.get(kind, 0)), None)
    moves_on = first is not None and kinds[first] != Message.Status.FAILED
    refill = None
    if moves_on:
        refill = next((i for i in range(first + 1, len(kinds)) if kinds[i] == Message.Status.FAILED), None)
    return _Plan(
        moves=tuple(moves),
        failure=_simulate(kinds, Message.Status.QUEUED)[1],
        stamps=tuple(stamps.items()),
        moves_on=moves_on,
        refill=refill,
    )


def _simulate(kinds: tuple[str, ...], start: str) -> tuple[str, int | None]:
    """The status a message in ``start`` ends in after statuses ``kinds`` in order,
    under message_status_apply's rules, and the index of the failure that applied."""
    state, failure = start, None
    for index, kind in enumerate(kinds):
        if kind == Message.Status.FAILED:
            if state in _FAILABLE:
                state, failure = Message.Status.FAILED, index
        elif state != Message.Status.FAILED and _RANK.get(state, 0) < _RANK.get(kind, 0):
            state = kind
    return state, failure


def message_statuses_apply(*, account_id, updates: Iterable[StatusUpdate]) -> int:
    """``messaging.services.message_status_apply`` for a whole batch, set-based: one
    UPDATE per chunk of wamids whatever the number of statuses, with exactly the same
    outcome as applying the updates one by one in order (statuses never move
    backwards, `failed` only before delivery, timestamps filled where missing, our
    ``biz_opaque_callback_data`` links a message whose send answer was lost) — but
    scoped to one account. Rows with nothing to change are not rewritten. Answers how
    many messages changed."""
    by_wamid: dict[str, list[StatusUpdate]] = {}
    for update in updates:
        by_wamid.setdefault(update.wamid, []).append(update)
    wamids = list(by_wamid)
    changed = 0
    for start in range(0, len(wamids), STATUS_CHUNK):
        chunk = {w: by_wamid[w] for w in wamids[start : start + STATUS_CHUNK]}
        found = _statuses_update(account_id, chunk)
        if found < len(chunk) and any(u.reference for events in chunk.values() for u in events):
            linked = _link_references(account_id, chunk)
            if linked:
                found += _statuses_update(account_id, {w: chunk[w] for w in linked})
        changed += found
    return changed


def _statuses_update(account_id, by_wamid: dict[str, list[StatusUpdate]]) -> int:
    """One UPDATE for the chunk, written as SQL: it runs for every delivery, and
    building it with the ORM (Case/When/Coalesce over Q objects) cost more CPU than the
    rest of the request. Portable: PostgreSQL and SQLite alike; values go as
    parameters, adapted like the ORM adapts them."""
    everyone = len(by_wamid)
    stamps: dict[str, dict[datetime, list[str]]] = defaultdict(lambda: defaultdict(list))
    moves: dict[tuple[str, str], list[str]] = defaultdict(list)
    failures: dict[tuple[str, str], list[str]] = defaultdict(list)
    for wamid, events in by_wamid.items():
        plan = _plan(tuple(event.status for event in events))
        for move in plan.moves:
            moves[move].append(wamid)
        for stamp, index in plan.stamps:
            stamps[stamp][events[index].at].append(wamid)
        if plan.failure is not None:
            failed = events[plan.failure]
            failures[(failed.error_code[:20], failed.error_title[:300])].append(wamid)
    if not stamps and not moves:  # only statuses we don't track (e.g. "deleted")
        return 0

    # Messages that leave the unknown outcome for a status Meta reports lose our error,
    # and their failed_at (unless a later `failed` fills it again, as after a delivery).
    cleared = [
        w for (start, end), ws in moves.items() if start == _UNKNOWN and end != Message.Status.FAILED for w in ws
    ]
    refills: dict[datetime | None, list[str]] = defaultdict(list)
    for wamid, events in by_wamid.items():
        plan = _plan(tuple(event.status for event in events))
        if plan.moves_on:
            refills[None if plan.refill is None else events[plan.refill].at].append(wamid)
    sql = _StatusSql(everyone)
    sets = []
    for stamp, groups in stamps.items():
        column = sql.column(stamp)
        # Placeholders are numbered by position: each piece is written in reading order.
        clear = sql.refill(refills) if stamp == "failed_at" else ""
        if len(groups) == 1 and len(next(iter(groups.values()))) == everyone:
            fill = sql.param(_db_datetime(next(iter(groups))))
        else:
            cases = " ".join(f"WHEN {sql.wamid_in(ws)} THEN {sql.param(_db_datetime(at))}" for at, ws in groups.items())
            fill = f"CASE {cases} END"
        sets.append(f"{column} = {clear}COALESCE({column}, {fill}){' END' if clear else ''}")
    if refills and "failed_at" not in stamps:
        column = sql.column("failed_at")
        sets.append(f"{column} = {sql.refill(refills)}{column} END")
    status = sql.column("status")
    if moves:
        cases = " ".join(
            f"WHEN {sql.state_is(start)}{sql.and_wamid_in(ws)} THEN {sql.param(end)}"
            for (start, end), ws in moves.items()
        )
        sets.append(f"{status} = CASE {cases} ELSE {status} END")
    for name, part in ("error_code", 0), ("error_title", 1):
        if not failures and not cleared:
            break
        column = sql.column(name)
        whens = [f"WHEN {sql.unknown()}{sql.and_wamid_in(cleared)} THEN {sql.param('')}"] if cleared else []
        whens += [
            f"WHEN ({status} IN ({sql.param(_FAILABLE[0])}, {sql.param(_FAILABLE[1])}) OR {sql.unknown()})"
            f"{sql.and_wamid_in(ws)} THEN {sql.param(error[part])}"
            for error, ws in failures.items()
        ]
        sets.append(f"{column} = CASE {' '.join(whens)} ELSE {column} END")
    # Placeholders are numbered by position: the WHERE is written in reading order.
    where = (
        f"{sql.column('account')} = {sql.param(_db_account_id(account_id))} "
        f"AND {sql.column('direction')} = {sql.param(Message.Direction.OUTBOUND)} "
        f"AND {sql.wamid_in(list(by_wamid))}"
    )
    # Only rows with something to change are written (a late `delivered` after `read`,
    # a retried delivery: nothing), sparing PostgreSQL dead row versions.
    needs = [f"{sql.column(stamp)} IS NULL" for stamp in stamps]
    if moves:
        starts = sorted({start for start, _ in moves} - {_UNKNOWN})
        if starts:
            needs.append(f"{status} IN ({', '.join(sql.param(start) for start in starts)})")
        if any(start == _UNKNOWN for start, _ in moves):
            needs.append(sql.unknown())
    where += f" AND ({' OR '.join(needs)})"
    # Identifiers come from the model's meta, every value is a parameter.
    query = f"UPDATE {sql.table} SET {', '.join(sets)} WHERE {where}"  # noqa: S608
    with db_connection.cursor() as cursor:
        cursor.execute(query, sql.params)
        return cursor.rowcount


class _StatusSql:
    """Placeholders and parameters of the status UPDATE, in the order they appear."""

    table = db_connection.ops.quote_name(Message._meta.db_table)

    def __init__(self, everyone: int):
        self.everyone = everyone
        self.params: list = []

    def param(self, value) -> str:
        self.params.append(str(value) if isinstance(value, str) else value)  # plain str, not a Choices member
        return "%s"

    @staticmethod
    def column(name: str) -> str:
        return db_connection.ops.quote_name(Message._meta.get_field(name).column)

    def unknown(self) -> str:
        """The test for a message failed with an unknown outcome (see _UNKNOWN)."""
        failed = self.param(Message.Status.FAILED)  # placeholders in reading order
        codes = ", ".join(self.param(code) for code in UNKNOWN_OUTCOME_CODES)
        return f"({self.column('status')} = {failed} AND {self.column('error_code')} IN ({codes}))"

    def refill(self, refills: dict) -> str:
        """The opening of failed_at's CASE for messages leaving the unknown outcome
        (``refills``: new value → wamids); "" when there are none."""
        whens = []
        for at, ws in refills.items():
            test = f"{self.unknown()}{self.and_wamid_in(ws)}"
            whens.append(f"WHEN {test} THEN {'NULL' if at is None else self.param(_db_datetime(at))}")
        return f"CASE {' '.join(whens)} ELSE " if whens else ""

    def state_is(self, state: str) -> str:
        return self.unknown() if state == _UNKNOWN else f"{self.column('status')} = {self.param(state)}"

    def wamid_in(self, wamids: list[str]) -> str:
        self.params.extend(wamids)
        return f"{self.column('wamid')} IN ({', '.join(['%s'] * len(wamids))})"

    def and_wamid_in(self, wamids: list[str]) -> str:
        """Nothing when the group is the whole chunk (the WHERE already says so)."""
        return "" if len(wamids) == self.everyone else f" AND {self.wamid_in(wamids)}"


def _db_datetime(value: datetime):
    return Message._meta.get_field("sent_at").get_db_prep_value(value, db_connection)


def _db_account_id(account_id):
    return Message._meta.get_field("account").get_db_prep_value(account_id, db_connection)


def _link_references(account_id, by_wamid: dict[str, list[StatusUpdate]]) -> list[str]:
    """Links unknown wamids to our message named by their biz_opaque_callback_data
    (the send's answer was lost, e.g. the worker died). Answers the wamids linked."""
    candidates = {w: [u.reference for u in events if u.reference] for w, events in by_wamid.items()}
    candidates = {w: refs for w, refs in candidates.items() if refs}
    known = set(Message.objects.filter(wamid__in=list(candidates)).values_list("wamid", flat=True))
    linked = []
    for wamid, refs in candidates.items():
        if wamid in known:
            continue
        for reference in refs:
            message_id = _uuid_or_none(reference)
            if message_id and Message.objects.filter(
                pk=message_id, account_id=account_id, direction=Message.Direction.OUTBOUND, wamid__isnull=True
            ).update(wamid=wamid, claim_token=None):  # a dead worker's claim is spent
                linked.append(wamid)
                break
    return linked


def _marketing_stopped_failures(connection: WhatsAppConnection, statuses: list[StatusUpdate]) -> None:
    """Meta refused a message because the contact stopped marketing messages (131050):
    they are opted out, as with the user_preferences `stop`."""
    wamids = [s.wamid for s in statuses if s.status == Message.Status.FAILED and s.error_code == META_MARKETING_STOPPED]
    if not wamids:
        return
    leads = Lead.objects.filter(
        account_id=connection.account_id, is_opted_out=False, messages__wamid__in=wamids
    ).distinct()
    for lead in leads:
        if lead_opt_out(lead=lead, reason=MARKETING_STOP_REASON):
            engagement_log(
                lead=lead,
                type=Engagement.Type.WHATSAPP,
                notes="Opted out: WhatsApp reported the contact stopped marketing messages (131050).",
            )


# --- Inbound messages ---------------------------------------------------------------------


@dataclass
class _Incoming:
    message: Message
    phone: str
    is_command_candidate: bool


def _record_inbound(connection: WhatsAppConnection, raw_messages: list[dict], names: dict[str, str]) -> None:
    account_id = connection.account_id
    now = timezone.now()
    parsed: dict[str, tuple[dict, str, datetime]] = {}
    for raw in raw_messages:
        wamid = _text(raw.get("id"), 128)
        phone = _e164(raw.get("from"))
        if wamid and phone and wamid not in parsed:
            parsed[wamid] = (raw, phone, min(_timestamp(raw.get("timestamp")), now))
    if not parsed:
        return
    phones = {phone: names.get(_digits(raw.get("from"))) for raw, phone, _ in parsed.values()}
    leads = _leads_for(account_id, phones, create=True)
    incoming: list[_Incoming] = []
    for wamid, (raw, phone, at) in parsed.items():
        kind, body, media = _content(raw)
        incoming.append(
            _Incoming(
                message=Message(
                    id=uuid.uuid4(),
                    account_id=account_id,
                    lead_id=leads[phone].pk,
                    direction=Message.Direction.INBOUND,
                    type=kind,
                    status=Message.Status.DELIVERED,
                    source=Message.Source.WHATSAPP,
                    provider=Message.Provider.CLOUD,
                    body=body,
                    media=media,
                    wamid=wamid,
                    is_read=False,
                    created_at=at,
                    delivered_at=at,
                ),
                phone=phone,
                is_command_candidate=kind == Message.Type.TEXT,
            )
        )
    new = _insert_new([i.message for i in incoming])
    fresh = [i for i in incoming if i.message.pk in new]
    if not fresh:
        return
    # The customer wrote: the 24-hour window opens (system notices don't count).
    latest: dict = {}
    for item in fresh:
        if item.message.media.get("type") != "system":
            lead_id = item.message.lead_id
            latest[lead_id] = max(latest.get(lead_id, item.message.created_at), item.message.created_at)
    _advance_leads(latest, ("last_inbound_at", "last_message_at"))
    _apply_opt_words(fresh, leads)


def _insert_new(messages: list[Message]) -> set:
    """Inserts the messages whose wamid is new; answers the ids actually inserted (a
    concurrent copy of the same delivery inserts each wamid once, here or there)."""
    Message.objects.bulk_create(messages, ignore_conflicts=True)
    stored = dict(Message.objects.filter(wamid__in=[m.wamid for m in messages]).values_list("wamid", "id"))
    return {m.pk for m in messages if stored.get(m.wamid) == m.pk}


def _leads_for(account_id, phones: dict[str, str | None], *, create: bool) -> dict[str, Lead]:
    """The account's leads for these E.164 phones; unknown phones become new leads
    (source "whatsapp", named from the WhatsApp profile) when ``create``."""
    fields = ("id", "account_id", "phone", "is_opted_out", "opted_out_at", "opt_out_reason")
    leads = {
        lead.phone: lead for lead in Lead.objects.filter(account_id=account_id, phone__in=list(phones)).only(*fields)
    }
    missing = [phone for phone in phones if phone not in leads]
    if missing and create:
        Lead.objects.bulk_create(
            [
                Lead(
                    account_id=account_id,
                    phone=phone,
                    name=clean_text(phones[phone])[:200] or phone,
                    source="whatsapp",
                )
                for phone in missing
            ],
            ignore_conflicts=True,  # created a moment ago by a concurrent delivery
        )
        leads.update(
            {lead.phone: lead for lead in Lead.objects.filter(account_id=account_id, phone__in=missing).only(*fields)}
        )
    return leads


def _advance_leads(latest: dict, fields: tuple[str, ...]) -> None:
    """Moves the lead timestamps forward to ``latest[lead_id]``, never backwards (a
    late, older event leaves a newer value alone)."""
    for lead_id, at in latest.items():
        Lead.objects.filter(pk=lead_id).update(
            **{
                name: Case(
                    When(Q(**{f"{name}__isnull": True}) | Q(**{f"{name}__lt": at}), then=Value(at)),
                    default=F(name),
                )
                for name in fields
            }
        )


# --- Opt-out and opt-in -------------------------------------------------------------------

_TRIM = string.whitespace + string.punctuation


def _normalized(text: str) -> str:
    """How a reply is compared with the opt words: trimmed (surrounding punctuation
    too: "Stop." is STOP), inner spaces collapsed, case-insensitive."""
    return " ".join(text.strip(_TRIM).split()).casefold()


def opt_out_words() -> set[str]:
    return {_normalized(w) for w in (*BASE_OPT_OUT_WORDS, *settings.OPT_OUT_WORDS)} - {""}


def opt_in_words() -> set[str]:
    return {_normalized(w) for w in (*BASE_OPT_IN_WORDS, *settings.OPT_IN_WORDS)} - {""} - opt_out_words()


def _apply_opt_words(fresh: list[_Incoming], leads: dict[str, Lead]) -> None:
    stop, start = opt_out_words(), opt_in_words()
    commands: dict[str, _Incoming] = {}  # lead phone → its latest command in this delivery
    for item in sorted(fresh, key=lambda i: i.message.created_at):
        if item.is_command_candidate and _normalized(item.message.body) in stop | start:
            commands[item.phone] = item
    for phone, item in commands.items():
        lead, message = leads[phone], item.message
        if _newer_command_exists(message, stop | start):
            continue  # a later STOP/START already decided (events arrive out of order)
        word = _normalized(message.body).upper()
        if _normalized(message.body) in stop:
            if lead_opt_out(lead=lead, reason=f'Replied "{word}" on WhatsApp'):
                engagement_log(
                    lead=lead,
                    type=Engagement.Type.WHATSAPP,
                    notes=f'Opted out: replied "{word}" on WhatsApp.',
                    at=message.created_at,
                )
        elif lead_opt_in(lead=lead):
            engagement_log(
                lead=lead,
                type=Engagement.Type.WHATSAPP,
                notes=f'Opted back in: replied "{word}" on WhatsApp.',
                at=message.created_at,
            )


def _newer_command_exists(message: Message, words: set[str]) -> bool:
    later = Message.objects.filter(
        lead_id=message.lead_id,
        direction=Message.Direction.INBOUND,
        type=Message.Type.TEXT,
        created_at__gt=message.created_at,
    ).values_list("body", flat=True)[:500]
    return any(_normalized(body) in words for body in later)


def _apply_preferences(connection: WhatsAppConnection, preferences: list[dict], names: dict[str, str]) -> None:
    """``user_preferences``: the contact stopped or resumed marketing messages. A stop
    opts the lead out (creating it, so the choice is kept if it is imported later); a
    resume opts back in only a lead that this stop opted out — not one who sent STOP
    or was opted out by the team — and only if it is newer than the opt-out."""
    wanted: list[tuple[str, str, datetime]] = []
    for pref in preferences:
        if _text(pref.get("category"), 64) != "marketing_messages":
            continue
        value = _text(pref.get("value"), 16).lower()
        phone = _e164(pref.get("wa_id"))
        if phone and value in ("stop", "resume"):
            wanted.append((phone, value, _timestamp(pref.get("timestamp"))))
    if not wanted:
        return
    stops = {phone: names.get(phone.lstrip("+")) for phone, value, _ in wanted if value == "stop"}
    leads = _leads_for(connection.account_id, stops, create=True)
    leads.update(_leads_for(connection.account_id, {p: None for p, _, _ in wanted if p not in leads}, create=False))
    for phone, value, at in sorted(wanted, key=lambda w: w[2]):
        lead = leads.get(phone)
        if lead is None:
            continue
        if value == "stop":
            if lead_opt_out(lead=lead, reason=MARKETING_STOP_REASON):
                lead.is_opted_out, lead.opted_out_at, lead.opt_out_reason = True, at, MARKETING_STOP_REASON
                engagement_log(
                    lead=lead,
                    type=Engagement.Type.WHATSAPP,
                    notes="Opted out of marketing messages on WhatsApp.",
                    at=at,
                )
        elif (
            lead.is_opted_out
            and lead.opt_out_reason == MARKETING_STOP_REASON
            and (lead.opted_out_at is None or lead.opted_out_at <= at)
            and lead_opt_in(lead=lead)
        ):
            lead.is_opted_out, lead.opted_out_at, lead.opt_out_reason = False, None, ""
            engagement_log(
                lead=lead,
                type=Engagement.Type.WHATSAPP,
                notes="Opted back in to marketing messages on WhatsApp.",
                at=at,
            )


# --- Coexistence echoes and templates -------------------------------------------------------


def _record_echoes(connection: WhatsAppConnection, echoes: list[dict]) -> None:
    """Messages the business sent from the WhatsApp Business app, recorded as outbound
    (status sent, source app_echo). They neither open the window nor count as opt
    words. A recipient who is not a lead yet becomes one only when the connection
    syncs the app's contacts."""
    now = timezone.now()
    parsed: dict[str, tuple[dict, str, datetime]] = {}
    for raw in echoes:
        wamid = _text(raw.get("id"), 128)
        phone = _e164(raw.get("to"))
        if wamid and phone and wamid not in parsed:
            parsed[wamid] = (raw, phone, min(_timestamp(raw.get("timestamp")), now))
    if not parsed:
        return
    leads = _leads_for(
        connection.account_id,
        {phone: None for _, phone, _ in parsed.values()},
        create=connection.sync_app_contacts,
    )
    messages = []
    for wamid, (raw, phone, at) in parsed.items():
        lead = leads.get(phone)
        if lead is None:
            continue
        kind, body, media = _content(raw)
        messages.append(
            Message(
                id=uuid.uuid4(),
                account_id=connection.account_id,
                lead_id=lead.pk,
                direction=Message.Direction.OUTBOUND,
                type=kind,
                status=Message.Status.SENT,
                source=Message.Source.APP_ECHO,
                provider=Message.Provider.CLOUD,
                body=body,
                media=media,
                wamid=wamid,
                created_at=at,
                sent_at=at,
            )
        )
    if not messages:
        return
    new = _insert_new(messages)
    latest: dict = {}
    for message in messages:
        if message.pk in new:
            latest[message.lead_id] = max(latest.get(message.lead_id, message.created_at), message.created_at)
    _advance_leads(latest, ("last_outbound_at", "last_message_at"))


def _apply_template_statuses(connection: WhatsAppConnection, changes: list[dict]) -> None:
    """``message_template_status_update``: Meta approved, rejected, paused… a template."""
    for change in changes:
        status = _text(change.get("event"), 16).upper()
        template_id = _text(change.get("message_template_id"), 64)
        if status in Template.Status.values and template_id:
            Template.objects.filter(account_id=connection.account_id, meta_id=template_id).update(status=status)


# --- Payload helpers ----------------------------------------------------------------------

_MEDIA_FIELDS = ("id", "mime_type", "sha256", "caption", "filename", "animated", "voice")
_LOCATION_FIELDS = ("latitude", "longitude", "name", "address", "url")


def _content(raw: dict) -> tuple[str, str, dict]:
    """(type, body, media) of a message object: text and replies (buttons, lists) are
    text; everything else is media, with its caption (or a short description) as
    body and Meta's details in ``media``."""
    kind, body, media = _content_parts(raw)
    return kind, body, _json_safe(media)


def _content_parts(raw: dict) -> tuple[str, str, dict]:
    kind = _text(raw.get("type"), 32) or "unknown"
    obj = raw.get(kind)
    details = _as_dict(obj)
    if kind == "text":
        return Message.Type.TEXT, _body(details.get("body")), {}
    if kind == "button":
        return (
            Message.Type.TEXT,
            _body(details.get("text")),
            {"type": "button", "payload": _text(details.get("payload"), 256)},
        )
    if kind == "interactive":
        reply = _as_dict(details.get(_text(details.get("type"), 32)))
        media = {"type": "interactive", "reply": {k: _text(reply.get(k), 256) for k in ("id", "title") if k in reply}}
        return Message.Type.TEXT, _body(reply.get("title") or reply.get("body")), media
    if kind in ("image", "video", "audio", "document", "sticker"):
        media = {"type": kind, **{k: details[k] for k in _MEDIA_FIELDS if k in details}}
        return Message.Type.MEDIA, _body(details.get("caption")), media
    if kind == "location":
        media = {"type": kind, **{k: details[k] for k in _LOCATION_FIELDS if k in details}}
        return (
            Message.Type.MEDIA,
            _body(", ".join(_text(details.get(k), 300) for k in ("name", "address") if details.get(k))),
            media,
        )
    if kind == "contacts":
        cards = _as_list(obj)
        names = [_text(_as_dict(_as_dict(c).get("name")).get("formatted_name"), 200) for c in cards]
        return Message.Type.MEDIA, _body(", ".join(n for n in names if n)), {"type": kind, "contacts": cards[:20]}
    if kind == "reaction":
        media = {
            "type": kind,
            "message_id": _text(details.get("message_id"), 128),
            "emoji": _text(details.get("emoji"), 16),
        }
        return Message.Type.MEDIA, _body(details.get("emoji")), media
    return Message.Type.MEDIA, _body(details.get("body") or details.get("text")), {"type": kind, "detail": details}


def _json_safe(value: Any, depth: int = 0) -> Any:
    """Meta's details as stored JSON: NUL characters removed (PostgreSQL's jsonb
    refuses them), nesting and sizes bounded."""
    if depth > 6:
        return None
    if isinstance(value, str):
        return value.replace("\x00", "")[:4096]
    if isinstance(value, dict):
        return {_json_safe(str(k), depth + 1): _json_safe(v, depth + 1) for k, v in list(value.items())[:50]}
    if isinstance(value, list):
        return [_json_safe(v, depth + 1) for v in value[:50]]
    return value if isinstance(value, (int, float, bool)) or value is None else str(value)


def _body(value: Any) -> str:
    return clean_text(_text(value, 65536))


def _text(value: Any, limit: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return ""
    return str(value).replace("\x00", "").strip()[:limit]


def _digits(value: Any) -> str:
    return "".join(ch for ch in _text(value, 40) if ch.isdigit())


def _e164(value: Any) -> str | None:
    """A WhatsApp id (digits with the country code) as E.164. Numbers that
    phonenumbers does not know are kept as ``+<digits>``: WhatsApp vouches for them."""
    digits = _digits(value)
    if not 7 <= len(digits) <= 15:
        return None
    try:
        return to_e164("+" + digits, "ZZ")
    except InvalidPhone:
        return "+" + digits


def _timestamp(value: Any) -> datetime:
    """Meta's Unix seconds (a string or a number); now when missing or absurd."""
    try:
        seconds = int(str(value).strip())
    except (TypeError, ValueError):
        return timezone.now()
    if not 946684800 <= seconds <= 4102444800:  # 2000-01-01 … 2100-01-01
        return timezone.now()
    return datetime.fromtimestamp(seconds, tz=UTC)


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None
