"""Reads of leads, tags, engagements and contacts, scoped to what the user may see.

The API views and the dashboard pages call these same functions."""

import re
import uuid
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, TruncDate

from accounts.models import User
from heroshhi.errors import NotFound, ValidationFailed
from leads.models import Engagement, Lead, Tag
from messaging.models import Message


def lead_scope(*, user: User) -> QuerySet[Lead]:
    """Every lead the user may see: the account's, and for an agent only those
    assigned to them or to nobody."""
    leads = Lead.objects.filter(account_id=user.account_id)
    if not user.is_account_admin:
        leads = leads.filter(Q(assigned_to=user) | Q(assigned_to__isnull=True))
    return leads


def lead_get(*, user: User, lead_id) -> Lead:
    """The lead, or NotFound: another account's lead (or one an agent can't see)
    answers exactly like a missing one."""
    try:
        lead_uuid = uuid.UUID(str(lead_id))
    except ValueError:
        raise NotFound("Lead not found.") from None
    lead = lead_scope(user=user).select_related("assigned_to").prefetch_related("tags").filter(pk=lead_uuid).first()
    if lead is None:
        raise NotFound("Lead not found.")
    return lead


def account_user_get(*, account_id, user_id, field: str = "assignedTo") -> User:
    """A user of the account, or a VALIDATION_ERROR on ``field`` (another account's user
    is unknown here)."""
    try:
        user_uuid = uuid.UUID(str(user_id))
    except ValueError:
        user_uuid = None
    user = User.objects.filter(pk=user_uuid, account_id=account_id, is_active=True).first() if user_uuid else None
    if user is None:
        raise ValidationFailed(
            f"{field}: No such user in this account.", errors={field: ["No such user in this account."]}
        )
    return user


_PHONE_LIKE = re.compile(r"[\d\s+\-().]+")


@dataclass(frozen=True)
class LeadFilters:
    status: str | None = None
    segment: str | None = None
    source: str | None = None
    assigned_to: str | None = None  # a user id, "me" or "unassigned"
    tag: str | None = None  # a tag id or name
    is_opted_out: bool | None = None
    created_from: date | datetime | None = None
    created_to: date | datetime | None = None
    search: str | None = None


def _start_of(value: date | datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone)
    return datetime.combine(value, time.min, tzinfo=zone)


def lead_list(*, user: User, filters: LeadFilters | None = None) -> QuerySet[Lead]:
    """The user's leads, filtered, newest first, with assignee and tags loaded (a
    constant number of queries for any page). Filter values naming another
    account's user or tag are a VALIDATION_ERROR."""
    filters = filters or LeadFilters()
    leads = lead_scope(user=user)
    if filters.status:
        leads = leads.filter(status=filters.status)
    if filters.segment:
        leads = leads.filter(segment=filters.segment)
    if filters.source:
        leads = leads.filter(source__iexact=filters.source)
    if filters.assigned_to:
        if filters.assigned_to == "unassigned":
            leads = leads.filter(assigned_to__isnull=True)
        elif filters.assigned_to == "me":
            leads = leads.filter(assigned_to=user)
        else:
            assignee = account_user_get(account_id=user.account_id, user_id=filters.assigned_to)
            leads = leads.filter(assigned_to=assignee)
    if filters.tag:
        tag = tag_get_for_filter(account_id=user.account_id, tag=filters.tag)
        leads = leads.filter(tags=tag)
    if filters.is_opted_out is not None:
        leads = leads.filter(is_opted_out=filters.is_opted_out)
    zone = zoneinfo.ZoneInfo(user.account.time_zone)
    if filters.created_from:
        leads = leads.filter(created_at__gte=_start_of(filters.created_from, zone))
    if filters.created_to:
        end = filters.created_to
        if isinstance(end, datetime):  # exact
            leads = leads.filter(created_at__lte=end if end.tzinfo else end.replace(tzinfo=zone))
        else:  # the whole day
            leads = leads.filter(created_at__lt=_start_of(end + timedelta(days=1), zone))
    if filters.search:
        term = filters.search.strip()
        digits = "".join(ch for ch in term if ch.isdigit())
        match = Q(name__icontains=term) | Q(email__icontains=term)
        # A term written like a phone number ("+91 98765") also matches phones by digits.
        if digits and _PHONE_LIKE.fullmatch(term):
            # icontains, like the others, so PostgreSQL can use the UPPER(phone) trigram index.
            match |= Q(phone__icontains=digits)
        leads = leads.filter(match)
    return leads.select_related("assigned_to").prefetch_related("tags").order_by("-created_at", "-id")


def tag_get_for_filter(*, account_id, tag: str) -> Tag:
    text = str(tag).strip()
    tags = Tag.objects.filter(account_id=account_id)
    found = tags.filter(pk=int(text)).first() if text.isdigit() else tags.filter(name__iexact=text).first()
    if found is None:
        raise ValidationFailed("tag: No such tag in this account.", errors={"tag": ["No such tag in this account."]})
    return found


def tag_list(*, user: User) -> QuerySet[Tag]:
    """The account's tags, each with the number of its leads the user can see."""
    visible = Q()
    if not user.is_account_admin:
        visible = Q(leads__assigned_to=user) | Q(leads__assigned_to__isnull=True)
    tags = Tag.objects.filter(account_id=user.account_id)
    return tags.annotate(lead_count=Count("leads", filter=visible, distinct=True)).order_by("name")


def tag_choices(*, account_id) -> QuerySet[Tag]:
    """The account's tags by name, without counts: what a filter or a picker offers.
    (Counting each tag's visible leads reads every tag link of the account.)"""
    return Tag.objects.filter(account_id=account_id).order_by("name")


def tag_get(*, account_id, tag_id) -> Tag:
    tag = Tag.objects.filter(account_id=account_id, pk=tag_id).first() if str(tag_id).isdigit() else None
    if tag is None:
        raise NotFound("Tag not found.")
    return tag


def engagement_list(*, lead: Lead) -> QuerySet[Engagement]:
    return lead.engagements.select_related("user").order_by("-at", "-id")


# --- Analytics -----------------------------------------------------------------------


def lead_analytics(*, user: User, date_from: date, date_to: date) -> dict:
    """Counts for the analytics page and API, in a fixed handful of queries whatever
    the number of leads. Days are the account's calendar days."""
    zone = zoneinfo.ZoneInfo(user.account.time_zone)
    leads = lead_scope(user=user)
    totals = leads.aggregate(
        total=Count("id"),
        converted=Count("id", filter=Q(status=Lead.Status.CONVERTED)),
        opted_out=Count("id", filter=Q(is_opted_out=True)),
    )
    by_status = dict(leads.order_by().values_list("status").annotate(n=Count("id")))
    by_segment = dict(leads.order_by().values_list("segment").annotate(n=Count("id")))
    by_source = leads.order_by().values("source").annotate(count=Count("id")).order_by("-count", "source")
    by_assignee = (
        leads.order_by()
        .values("assigned_to", "assigned_to__name", "assigned_to__email")
        .annotate(count=Count("id"))
        .order_by("-count")
    )
    start, end = _start_of(date_from, zone), _start_of(date_to + timedelta(days=1), zone)
    per_day = dict(
        leads.filter(created_at__gte=start, created_at__lt=end)
        .annotate(day=TruncDate("created_at", tzinfo=zone))
        .order_by()
        .values_list("day")
        .annotate(n=Count("id"))
    )
    messages = Message.objects.filter(
        account_id=user.account_id, created_at__gte=start, created_at__lt=end, lead__in=leads
    ).aggregate(
        inbound=Count("id", filter=Q(direction=Message.Direction.INBOUND)),
        outbound=Count("id", filter=Q(direction=Message.Direction.OUTBOUND)),
    )
    total = totals["total"]
    days = (date_to - date_from).days + 1
    return {
        "total": total,
        "byStatus": {choice: by_status.get(choice, 0) for choice in Lead.Status.values},
        "bySegment": {
            **{choice: by_segment.get(choice, 0) for choice in Lead.Segment.values},
            "none": by_segment.get("", 0),
        },
        "bySource": [{"source": row["source"] or None, "count": row["count"]} for row in by_source],
        "byAssignee": [
            {
                "userId": str(row["assigned_to"]) if row["assigned_to"] else None,
                "name": row["assigned_to__name"] or row["assigned_to__email"] or "Unassigned",
                "count": row["count"],
            }
            for row in by_assignee
        ],
        "createdPerDay": [
            {
                "date": (date_from + timedelta(days=i)).isoformat(),
                "count": per_day.get(date_from + timedelta(days=i), 0),
            }
            for i in range(days)
        ],
        "conversionRate": round(100 * totals["converted"] / total, 2) if total else 0.0,
        "converted": totals["converted"],
        "optedOut": totals["opted_out"],
        "messages": {"inbound": messages["inbound"], "outbound": messages["outbound"]},
        "range": {"from": date_from.isoformat(), "to": date_to.isoformat(), "timeZone": user.account.time_zone},
    }


# --- HeyDoc contacts -----------------------------------------------------------------


def contact_list(*, user: User) -> QuerySet[Lead]:
    """Leads seen as HeyDoc contacts, latest conversation first, each annotated with
    its last message, message count and unread count by subqueries (no query per
    contact), tags prefetched."""
    messages = Message.objects.filter(lead=OuterRef("pk")).order_by()
    return (
        lead_scope(user=user)
        .annotate(
            last_message_text=Subquery(messages.order_by("-created_at", "-id").values("body")[:1]),
            message_count=_count_of(messages),
            unread_count=_count_of(messages.filter(direction=Message.Direction.INBOUND, is_read=False)),
        )
        .prefetch_related("tags")
        .order_by(F("last_message_at").desc(nulls_last=True), "-created_at", "-id")
    )


def _count_of(messages: QuerySet) -> Coalesce:
    counted = messages.values("lead").annotate(n=Count("id")).values("n")[:1]
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))
