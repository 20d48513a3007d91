"""Reads of messaging, scoped to what the user may see: message lists and
conversations, HeyDoc's per-phone history, templates, the WhatsApp connection's
status, and the audience of a bulk send.

The API views and the dashboard pages call these same functions."""

import re
import uuid
import zoneinfo
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate

from accounts.models import Account, User
from heroshhi.errors import DomainError, ValidationFailed
from leads.models import Lead
from leads.phones import InvalidPhone, to_e164
from leads.selectors import LeadFilters, lead_list, lead_scope
from messaging.models import Message, Template, WhatsAppConnection

# A phone as HeyDoc writes it in a path: digits, optionally after a "+".
PHONE_REF = re.compile(r"\+?\d{1,20}")
SANDBOX_NUMBER = "sandbox"
HEYDOC_DEFAULT_LIMIT = 20
HEYDOC_MAX_LIMIT = 200
MAX_BULK_RECIPIENTS = 5000


class WhatsAppNotConnected(DomainError):
    status_code = 400
    code = "WHATSAPP_NOT_CONNECTED"
    default_message = (
        "This workspace has no WhatsApp Cloud API connection: messages go to the sandbox. "
        "Connect a number first (POST /api/whatsapp/connect)."
    )


# --- Messages ---------------------------------------------------------------------------


def message_scope(*, user: User) -> QuerySet[Message]:
    """Every message the user may see: the account's, and for an agent only those of
    the leads they may see (assigned to them or to nobody)."""
    messages = Message.objects.filter(account_id=user.account_id)
    if not user.is_account_admin:
        messages = messages.filter(Q(lead__assigned_to=user) | Q(lead__assigned_to__isnull=True))
    return messages


@dataclass(frozen=True)
class MessageFilters:
    direction: str | None = None
    status: str | None = None
    lead_id: uuid.UUID | None = None
    type: str | None = None
    created_from: date | datetime | None = None
    created_to: date | datetime | None = None
    search: str | None = None


def _start_of(value: date | datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone)
    return datetime.combine(value, time.min, tzinfo=zone)


def message_list(*, user: User, filters: MessageFilters | None = None) -> QuerySet[Message]:
    """The user's messages, filtered, newest first. Dates are whole days in the
    account's time zone; date-times are exact. Serializing a page needs no further
    query (the output names related rows by id only)."""
    filters = filters or MessageFilters()
    messages = message_scope(user=user)
    if filters.direction:
        messages = messages.filter(direction=filters.direction)
    if filters.status:
        messages = messages.filter(status=filters.status)
    if filters.lead_id:
        messages = messages.filter(lead_id=filters.lead_id)
    if filters.type:
        messages = messages.filter(type=filters.type)
    zone = zoneinfo.ZoneInfo(user.account.time_zone)
    if filters.created_from:
        messages = messages.filter(created_at__gte=_start_of(filters.created_from, zone))
    if filters.created_to:
        end = filters.created_to
        if isinstance(end, datetime):
            messages = messages.filter(created_at__lte=end if end.tzinfo else end.replace(tzinfo=zone))
        else:
            messages = messages.filter(created_at__lt=_start_of(end + timedelta(days=1), zone))
    if filters.search:
        messages = messages.filter(body__icontains=filters.search.strip())
    return messages.order_by("-created_at", "-id")


def message_status_per_day(*, user: User, date_from: date, date_to: date) -> list[dict]:
    """Outbound messages the user may see, per day of the account's calendar from
    ``date_from`` to ``date_to`` (zeros included), counted by how far each got:
    sent (sent, delivered or read), delivered (delivered or read), read, failed.
    Statuses never move backwards, so the status says it all. One query."""
    zone = zoneinfo.ZoneInfo(user.account.time_zone)
    start, end = _start_of(date_from, zone), _start_of(date_to + timedelta(days=1), zone)
    status = Message.Status
    rows = (
        message_scope(user=user)
        .filter(direction=Message.Direction.OUTBOUND, created_at__gte=start, created_at__lt=end)
        .annotate(day=TruncDate("created_at", tzinfo=zone))
        .order_by()
        .values("day")
        .annotate(
            total=Count("id"),
            sent=Count("id", filter=Q(status__in=[status.SENT, status.DELIVERED, status.READ])),
            delivered=Count("id", filter=Q(status__in=[status.DELIVERED, status.READ])),
            read=Count("id", filter=Q(status=status.READ)),
            failed=Count("id", filter=Q(status=status.FAILED)),
        )
    )
    by_day = {row["day"]: row for row in rows}
    days = []
    for i in range((date_to - date_from).days + 1):
        day = date_from + timedelta(days=i)
        row = by_day.get(day, {})
        days.append({"date": day, **{k: row.get(k, 0) for k in ("total", "sent", "delivered", "read", "failed")}})
    return days


def conversation(*, lead: Lead, oldest_first: bool = False) -> QuerySet[Message]:
    """One lead's messages, both directions; newest first unless asked otherwise.
    The caller has already checked that the user may see the lead."""
    order = ("created_at", "id") if oldest_first else ("-created_at", "-id")
    return Message.objects.filter(lead=lead, account_id=lead.account_id).order_by(*order)


def heydoc_history(*, lead: Lead, limit: int = HEYDOC_DEFAULT_LIMIT) -> list[Message]:
    """HeyDoc's per-phone history: the newest ``limit`` messages, oldest first (the
    order a chat shows them in)."""
    limit = max(1, min(limit, HEYDOC_MAX_LIMIT))
    newest = Message.objects.filter(lead=lead, account_id=lead.account_id).order_by("-created_at", "-id")[:limit]
    return list(reversed(newest))


# --- Leads by phone ---------------------------------------------------------------------


def is_phone_ref(value: str) -> bool:
    return bool(PHONE_REF.fullmatch(value))


def phone_e164(*, account: Account, phone: str, field_name: str = "phone") -> str:
    """The phone in E.164 with the account's region, or a VALIDATION_ERROR on ``field_name``."""
    try:
        return to_e164(phone, account.default_country)
    except InvalidPhone as exc:
        raise ValidationFailed(f"{field_name}: {exc}", errors={field_name: [str(exc)]}) from None


def lead_by_phone(*, user: User, phone: str, field_name: str = "phone") -> Lead | None:
    """The lead with this phone among those the user may see, or None. A phone that
    can't be a phone number is a VALIDATION_ERROR."""
    e164 = phone_e164(account=user.account, phone=phone, field_name=field_name)
    return lead_scope(user=user).filter(phone=e164).first()


# --- The WhatsApp connection ------------------------------------------------------------


def connection_for(*, account: Account) -> WhatsAppConnection | None:
    return WhatsAppConnection.objects.filter(account=account).first()


def connection_get(*, account: Account) -> WhatsAppConnection:
    """The account's Cloud API connection, or WHATSAPP_NOT_CONNECTED (sandbox)."""
    connection = connection_for(account=account)
    if connection is None:
        raise WhatsAppNotConnected()
    return connection


def business_number(*, connection: WhatsAppConnection | None) -> str:
    """Our side of a conversation as HeyDoc shows it: the connected number's digits,
    or "sandbox"."""
    if connection is None:
        return SANDBOX_NUMBER
    digits = "".join(ch for ch in connection.display_phone_number if ch.isdigit())
    return digits or connection.phone_number_id


@dataclass(frozen=True)
class Coexistence:
    enabled: bool
    record_app_echoes: bool
    sync_app_contacts: bool


@dataclass(frozen=True)
class WhatsAppStatus:
    """What /api/whatsapp/status shows: never the access token or the app secret."""

    provider: str
    connected: bool
    sandbox: bool
    status: str
    status_detail: str
    phone_number_id: str | None = None
    waba_id: str | None = None
    display_phone_number: str | None = None
    verified_name: str | None = None
    quality_rating: str | None = None
    business_number: str = SANDBOX_NUMBER
    throughput_cap: int | None = None
    coexistence: Coexistence | None = None
    templates_synced_at: datetime | None = None
    connected_at: datetime | None = None
    webhook_url: str = field(default_factory=lambda: f"{settings.PUBLIC_BASE_URL}/api/webhooks/whatsapp")


SANDBOX_DETAIL = (
    "Sandbox: no WhatsApp Cloud API connection. Messages are not delivered to anyone; the built-in "
    "sandbox assigns wamids and walks statuses sent → delivered → read."
)


def coexistence_of(connection: WhatsAppConnection) -> Coexistence:
    return Coexistence(
        enabled=connection.coexistence_enabled,
        record_app_echoes=connection.record_app_echoes,
        sync_app_contacts=connection.sync_app_contacts,
    )


def whatsapp_status(*, account: Account) -> WhatsAppStatus:
    connection = connection_for(account=account)
    if connection is None:
        return WhatsAppStatus(
            provider=Message.Provider.SANDBOX,
            connected=False,
            sandbox=True,
            status=SANDBOX_NUMBER,
            status_detail=SANDBOX_DETAIL,
        )
    return WhatsAppStatus(
        provider=Message.Provider.CLOUD,
        connected=connection.status == WhatsAppConnection.Status.CONNECTED,
        sandbox=False,
        status=connection.status,
        status_detail=connection.status_detail,
        phone_number_id=connection.phone_number_id,
        waba_id=connection.waba_id,
        display_phone_number=connection.display_phone_number,
        verified_name=connection.verified_name,
        quality_rating=connection.quality_rating or None,
        business_number=business_number(connection=connection),
        throughput_cap=connection.throughput_cap,
        coexistence=coexistence_of(connection),
        templates_synced_at=connection.templates_synced_at,
        connected_at=connection.connected_at,
    )


# --- Templates --------------------------------------------------------------------------


def template_list(*, account: Account) -> QuerySet[Template]:
    return Template.objects.filter(account=account).order_by("name", "language")


def templates_need_sync(*, account: Account) -> bool:
    """True when the account has never loaded its templates: a connection never
    synced, or a sandbox workspace without its sandbox templates."""
    connection = connection_for(account=account)
    if connection is not None:
        return connection.templates_synced_at is None
    return not Template.objects.filter(account=account, is_sandbox=True).exists()


# --- Bulk sends -------------------------------------------------------------------------


@dataclass
class BulkAudience:
    """The leads of a bulk send, loaded in one query: ``leads`` to send to,
    ``invalid`` ids that name no lead the user may see."""

    leads: list[Lead]
    invalid: int = 0


def bulk_audience(
    *, user: User, lead_ids: list[uuid.UUID] | None = None, filters: LeadFilters | None = None
) -> BulkAudience:
    """The leads named by id (duplicates ignored; ids the user can't see are counted
    as invalid) or matched by the lead filters, in one query. Opted-out leads are
    included: the sending service skips and counts them."""
    if lead_ids is not None:
        wanted = list(dict.fromkeys(lead_ids))
        if len(wanted) > MAX_BULK_RECIPIENTS:
            raise ValidationFailed(
                f"leadIds: At most {MAX_BULK_RECIPIENTS} leads at a time; use a broadcast for more.",
                errors={"leadIds": [f"At most {MAX_BULK_RECIPIENTS} leads at a time."]},
            )
        leads = list(lead_scope(user=user).filter(pk__in=wanted).order_by("created_at", "id"))
        return BulkAudience(leads=leads, invalid=len(wanted) - len(leads))
    # Only the lead rows: no assignee join or tag prefetch (one query).
    matched_leads = lead_list(user=user, filters=filters).select_related(None).prefetch_related(None)
    matched = list(matched_leads.order_by("created_at", "id")[: MAX_BULK_RECIPIENTS + 1])
    if len(matched) > MAX_BULK_RECIPIENTS:
        raise ValidationFailed(
            f"filter: More than {MAX_BULK_RECIPIENTS} leads match; narrow the filter or use a broadcast.",
            errors={"filter": [f"More than {MAX_BULK_RECIPIENTS} leads match."]},
        )
    return BulkAudience(leads=matched)
