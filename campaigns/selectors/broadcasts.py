"""Reads of broadcasts: who may see which, their live counts, and audiences.

An audience is stored on the broadcast as given, after checking, in one of two forms:
``{"leadIds": ["<uuid>", …]}`` or ``{"filter": {"status": [...], "segment": [...],
"tags": [<tag id>, …], "source": "…", "assignedTo": "<user id>" | "unassigned"}}``
(tag names resolved to ids, ``me`` to the creator's id). It is evaluated against the
leads the creator may see (leads.selectors.lead_scope) when the broadcast starts."""

import uuid
from datetime import datetime

from django.db.models import Count, Q, QuerySet, Subquery
from django.utils import timezone

from accounts.models import User
from campaigns.models import Broadcast
from heroshhi.errors import NotFound, ValidationFailed
from leads.models import Lead, Tag
from leads.selectors import lead_scope
from messaging.models import Message
from messaging.services import WINDOW

# Explicit lead ids per broadcast; larger audiences are a filter.
MAX_LEAD_IDS = 10_000
# Failed at send time because the lead opted out after the snapshot: counted as
# skipped opted-out, not as failed.
OPT_OUT_CODE = "OPT_OUT"
FILTER_KEYS = ("status", "segment", "tags", "source", "assignedTo")


# --- Broadcasts ---------------------------------------------------------------------------


def broadcast_scope(*, user: User) -> QuerySet[Broadcast]:
    """The broadcasts the user may see: the account's for an admin, their own for an agent."""
    broadcasts = Broadcast.objects.filter(account_id=user.account_id)
    if not user.is_account_admin:
        broadcasts = broadcasts.filter(created_by=user)
    return broadcasts


def broadcast_get(*, user: User, broadcast_id) -> Broadcast:
    """The broadcast with its totals, or NotFound: another account's broadcast (or, for
    an agent, a colleague's) answers exactly like a missing one."""
    try:
        pk = uuid.UUID(str(broadcast_id))
    except ValueError:
        raise NotFound("Broadcast not found.") from None
    broadcast = broadcast_scope(user=user).select_related("created_by").filter(pk=pk).first()
    if broadcast is None:
        raise NotFound("Broadcast not found.")
    broadcast.totals = broadcast_totals(broadcast_ids=[broadcast.pk])[broadcast.pk]
    return broadcast


def broadcast_list(*, user: User, status: str | None = None) -> QuerySet[Broadcast]:
    """Newest first; pages get their totals from ``broadcasts_with_totals``."""
    broadcasts = broadcast_scope(user=user).select_related("created_by")
    if status:
        broadcasts = broadcasts.filter(status=status)
    return broadcasts.order_by("-created_at", "-id")


def broadcasts_with_totals(broadcasts: list[Broadcast]) -> list[Broadcast]:
    """Sets ``totals`` on each broadcast of a page: one query for the whole page."""
    totals = broadcast_totals(broadcast_ids=[b.pk for b in broadcasts])
    for broadcast in broadcasts:
        broadcast.totals = totals[broadcast.pk]
    return broadcasts


def _empty_totals() -> dict:
    return {"queued": 0, "sent": 0, "delivered": 0, "read": 0, "failed": 0, "opted_out_at_send": 0}


def broadcast_totals(*, broadcast_ids: list) -> dict:
    """{broadcast id: {queued, sent, delivered, read, failed, opted_out_at_send}} from one
    aggregate query over the broadcasts' outbox messages (the (broadcast, lead) unique
    index leads with the broadcast). Messages failed because the lead opted out after the
    snapshot count as ``opted_out_at_send``, not as failed."""
    totals = {pk: _empty_totals() for pk in broadcast_ids}
    if not broadcast_ids:
        return totals
    opted_out = Q(status=Message.Status.FAILED, error_code=OPT_OUT_CODE)
    rows = (
        Message.objects.filter(broadcast_id__in=broadcast_ids)
        .order_by()
        .values("broadcast_id")
        .annotate(
            queued=Count("id", filter=Q(status=Message.Status.QUEUED)),
            sent=Count("id", filter=Q(status=Message.Status.SENT)),
            delivered=Count("id", filter=Q(status=Message.Status.DELIVERED)),
            read=Count("id", filter=Q(status=Message.Status.READ)),
            failed=Count("id", filter=Q(status=Message.Status.FAILED) & ~opted_out),
            opted_out_at_send=Count("id", filter=opted_out),
        )
    )
    for row in rows:
        totals[row.pop("broadcast_id")] = row
    return totals


def broadcasts_due(*, now: datetime | None = None, limit: int = 100) -> list:
    """Ids of scheduled broadcasts whose time has come, oldest first (index: status, scheduled_at)."""
    return list(
        Broadcast.objects.filter(status=Broadcast.Status.SCHEDULED, scheduled_at__lte=now or timezone.now())
        .order_by("scheduled_at")
        .values_list("pk", flat=True)[:limit]
    )


# --- Audiences ----------------------------------------------------------------------------


def _invalid(field: str, message: str, *, nested: str | None = None) -> ValidationFailed:
    errors = {field: {nested: [message]}} if nested else {field: [message]}
    return ValidationFailed(f"{field}{'.' + nested if nested else ''}: {message}", errors=errors)


def audience_normalize(*, user: User, lead_ids: list | None = None, filters: dict | None = None) -> dict:
    """Checks an audience as the API gives it and answers the form stored on the
    broadcast. Every id must name something of the user's account that the user may see
    (leads: lead_scope; tags and assignees: the account); anything else is a
    VALIDATION_ERROR naming it, and nothing is acted on."""
    if (lead_ids is None) == (filters is None):
        raise _invalid("leadIds", "Give either `leadIds` or `filter`.")
    if lead_ids is not None:
        wanted = list(dict.fromkeys(uuid.UUID(str(pk)) for pk in lead_ids))
        if not wanted:
            raise _invalid("leadIds", "Give at least one lead.")
        if len(wanted) > MAX_LEAD_IDS:
            raise _invalid("leadIds", f"At most {MAX_LEAD_IDS} leads; use a filter for larger audiences.")
        visible = set(lead_scope(user=user).filter(pk__in=wanted).values_list("pk", flat=True))
        missing = [str(pk) for pk in wanted if pk not in visible]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise _invalid("leadIds", f"No lead you can see with id {shown}.")
        return {"leadIds": [str(pk) for pk in wanted]}

    normalized: dict = {}
    for key in ("status", "segment"):
        if filters.get(key):
            normalized[key] = sorted(set(filters[key]))
    if filters.get("source"):
        normalized["source"] = filters["source"]
    if filters.get("tags"):
        normalized["tags"] = _tag_ids(account_id=user.account_id, refs=filters["tags"])
    assigned_to = filters.get("assignedTo")
    if assigned_to:
        if assigned_to == "unassigned":
            normalized["assignedTo"] = "unassigned"
        elif assigned_to == "me":
            normalized["assignedTo"] = str(user.pk)
        else:
            try:
                assignee = uuid.UUID(str(assigned_to))
            except ValueError:
                assignee = None
            if assignee is None or not User.objects.filter(pk=assignee, account_id=user.account_id).exists():
                raise _invalid("filter", "No such user in this account.", nested="assignedTo")
            normalized["assignedTo"] = str(assignee)
    return {"filter": normalized}


def _tag_ids(*, account_id, refs: list) -> list[int]:
    """Tag ids for refs given as ids (integers) or names (any case), in one query."""
    # An id beyond a 64-bit integer names no tag (and would overflow the query).
    ids = {ref for ref in refs if isinstance(ref, int) and 0 < ref < 2**63}
    names = {ref.strip().lower() for ref in refs if isinstance(ref, str)}
    match = Q(pk__in=ids)
    for name in names:
        match |= Q(name__iexact=name)
    found = list(Tag.objects.filter(account_id=account_id).filter(match).values_list("pk", "name"))
    found_ids = {pk for pk, _ in found}
    found_names = {name.lower() for _, name in found}

    def known(ref) -> bool:
        return ref in found_ids if isinstance(ref, int) else ref.strip().lower() in found_names

    unknown = [str(ref) for ref in refs if not known(ref)]
    if unknown:
        raise _invalid("filter", f"No such tag in this account: {', '.join(unknown)}.", nested="tags")
    return sorted(found_ids)


def audience_leads(*, user: User, audience: dict) -> QuerySet[Lead]:
    """The leads a stored audience names, among those the user may see now. Tags are
    "any of"; a tag deleted since matches nothing (it never widens the audience)."""
    leads = lead_scope(user=user)
    if "leadIds" in audience:
        return leads.filter(pk__in=audience["leadIds"])
    criteria = audience.get("filter") or {}
    if criteria.get("status"):
        leads = leads.filter(status__in=criteria["status"])
    if criteria.get("segment"):
        leads = leads.filter(segment__in=criteria["segment"])
    if criteria.get("source"):
        leads = leads.filter(source__iexact=criteria["source"])
    if "tags" in criteria:
        tagged = Lead.tags.through.objects.filter(tag_id__in=criteria["tags"], tag__account_id=user.account_id)
        leads = leads.filter(pk__in=Subquery(tagged.values("lead_id")))
    assigned_to = criteria.get("assignedTo")
    if assigned_to == "unassigned":
        leads = leads.filter(assigned_to__isnull=True)
    elif assigned_to:
        leads = leads.filter(assigned_to_id=assigned_to)
    return leads


def audience_counts(*, user: User, audience: dict, now: datetime | None = None) -> dict:
    """What a broadcast to this audience would reach now, in one aggregate query:
    leads matched, opted out among them (skipped), recipients (the rest), and how many
    recipients are outside the 24-hour window (a text broadcast skips them; a template
    reaches them). The dashboard's live count uses this too."""
    now = now or timezone.now()
    counts = (
        audience_leads(user=user, audience=audience)
        .order_by()
        .aggregate(
            matched=Count("id"),
            opted_out=Count("id", filter=Q(is_opted_out=True)),
            window_open=Count("id", filter=Q(is_opted_out=False, last_inbound_at__gt=now - WINDOW)),
        )
    )
    recipients = counts["matched"] - counts["opted_out"]
    return {
        "matched": counts["matched"],
        "recipients": recipients,
        "optedOut": counts["opted_out"],
        "windowClosed": recipients - counts["window_open"],
    }
