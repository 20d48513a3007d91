"""Writes of leads, tags and engagements, with their rules: tenancy and roles, one
lead per phone per account, HTML stripped from free text, set-based bulk changes
that apply to every named lead or to none.

The DRF views, the dashboard, the admin and the tasks call these functions."""

from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Account, User
from heroshhi.errors import PermissionDenied, ValidationFailed
from heroshhi.text import clean_text
from leads.models import Engagement, Lead, Tag
from leads.phones import phone_or_error
from leads.selectors import account_user_get, lead_scope

MAX_BULK_IDS = 5000
TEXT_FIELDS = ("name", "source", "inquiry", "notes", "opt_out_reason")
DEFAULT_TAG_COLOR = "#6b7280"


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", errors={field: [message]})


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    cleaned = dict(data)
    for field in TEXT_FIELDS:
        if field in cleaned and cleaned[field] is not None:
            cleaned[field] = clean_text(cleaned[field])
    if "name" in cleaned and not cleaned["name"]:
        raise _invalid("name", "Name is required (HTML is removed).")
    if cleaned.get("email"):
        cleaned["email"] = cleaned["email"].strip().lower()
    return cleaned


def _check_assignee(*, actor: User, assignee_id) -> User | None:
    """The assignee a user may set: any active user of the account for an admin;
    for an agent only themselves (or nobody)."""
    if assignee_id in (None, ""):
        return None
    assignee = account_user_get(account_id=actor.account_id, user_id=assignee_id)
    if not actor.is_account_admin and assignee.pk != actor.pk:
        raise _invalid("assignedTo", "Agents can assign leads only to themselves.")
    return assignee


def _opt_out_fields(is_opted_out: bool, reason: str = "") -> dict[str, Any]:
    if is_opted_out:
        return {"is_opted_out": True, "opted_out_at": timezone.now(), "opt_out_reason": reason}
    return {"is_opted_out": False, "opted_out_at": None, "opt_out_reason": ""}


# --- Tags -------------------------------------------------------------------------------


def tags_resolve(*, account_id, values: Iterable[int | str], create: bool = True) -> list[Tag]:
    """Tags named by id (int) or name (str) in the account; unknown names are created
    when ``create``; an unknown id (or another account's) is a VALIDATION_ERROR."""
    values = list(values)
    ids = {v for v in values if isinstance(v, int) and not isinstance(v, bool)}
    names = {clean_text(v)[:50] for v in values if isinstance(v, str)} - {""}
    found = list(Tag.objects.filter(account_id=account_id, pk__in=ids)) if ids else []
    if len(found) != len(ids):
        missing = sorted(ids - {tag.pk for tag in found})
        raise _invalid("tags", f"No such tag in this account: {', '.join(map(str, missing))}.")
    if names:
        existing = {tag.name.lower(): tag for tag in Tag.objects.filter(account_id=account_id, name__in=names)}
        # Names match case-insensitively; fetch the rest with one more query.
        wanted = {name.lower(): name for name in names}
        missing_names = [name for key, name in wanted.items() if key not in existing]
        if missing_names:
            lowered = {tag.name.lower(): tag for tag in Tag.objects.filter(account_id=account_id)}
            existing.update({key: lowered[key] for key in wanted if key in lowered})
            missing_names = [name for key, name in wanted.items() if key not in existing]
        if missing_names:
            if not create:
                raise _invalid("tags", f"No such tag in this account: {', '.join(missing_names)}.")
            Tag.objects.bulk_create(
                [Tag(account_id=account_id, name=name, color=DEFAULT_TAG_COLOR) for name in missing_names],
                ignore_conflicts=True,
            )
            existing.update(
                {tag.name.lower(): tag for tag in Tag.objects.filter(account_id=account_id, name__in=missing_names)}
            )
        found.extend(existing[key] for key in wanted)
    return found


def tag_create(*, account_id, name: str, color: str = DEFAULT_TAG_COLOR) -> Tag:
    name = clean_text(name)
    if not name:
        raise _invalid("name", "Name is required.")
    if Tag.objects.filter(account_id=account_id, name__iexact=name).exists():
        raise _invalid("name", "A tag with this name already exists.")
    try:
        with transaction.atomic():
            return Tag.objects.create(account_id=account_id, name=name, color=color)
    except IntegrityError:
        raise _invalid("name", "A tag with this name already exists.") from None


def tag_update(*, tag: Tag, name: str | None = None, color: str | None = None) -> Tag:
    if name is not None:
        name = clean_text(name)
        if not name:
            raise _invalid("name", "Name is required.")
        if Tag.objects.filter(account_id=tag.account_id, name__iexact=name).exclude(pk=tag.pk).exists():
            raise _invalid("name", "A tag with this name already exists.")
        tag.name = name
    if color is not None:
        tag.color = color
    try:
        with transaction.atomic():
            tag.save(update_fields=["name", "color"])
    except IntegrityError:  # renamed to the same name at the same moment
        raise _invalid("name", "A tag with this name already exists.") from None
    return tag


def tag_delete(*, user: User, tag: Tag) -> None:
    if not user.is_account_admin:
        raise PermissionDenied("Only account admins can delete tags.")
    tag.delete()


def lead_add_tags(*, lead: Lead, values: Iterable[int | str]) -> list[Tag]:
    tags = tags_resolve(account_id=lead.account_id, values=values)
    lead.tags.add(*tags)
    return tags


def lead_remove_tag(*, lead: Lead, tag: Tag) -> None:
    lead.tags.remove(tag)


# --- Leads ------------------------------------------------------------------------------


def _phone(account: Account, raw: str) -> str:
    return phone_or_error(raw, account.default_country)


def _phone_taken(account_id, phone: str, exclude_id=None) -> bool:
    others = Lead.objects.filter(account_id=account_id, phone=phone)
    if exclude_id:
        others = others.exclude(pk=exclude_id)
    return others.exists()


@transaction.atomic
def lead_create(*, user: User, data: dict[str, Any]) -> Lead:
    """``data`` uses model field names; ``assigned_to`` is a user id, ``tags`` a list
    of tag ids or names."""
    data = _clean(data)
    account = user.account
    phone = _phone(account, data.pop("phone", ""))
    if _phone_taken(account.pk, phone):
        raise _invalid("phone", "A lead with this phone number already exists.")
    tags = data.pop("tags", None)
    assignee = _check_assignee(actor=user, assignee_id=data.pop("assigned_to", None))
    opted_out = data.pop("is_opted_out", False)
    lead = Lead(account=account, phone=phone, assigned_to=assignee, **data, **_opt_out_fields(opted_out))
    if opted_out and data.get("opt_out_reason"):
        lead.opt_out_reason = data["opt_out_reason"]
    try:
        with transaction.atomic():
            lead.save()
    except IntegrityError:  # the same phone created a moment ago
        raise _invalid("phone", "A lead with this phone number already exists.") from None
    if tags:
        lead.tags.set(tags_resolve(account_id=account.pk, values=tags))
    return lead


@transaction.atomic
def lead_update(*, user: User, lead: Lead, data: dict[str, Any]) -> Lead:
    """Changes the given fields (a PUT sends them all, a PATCH some)."""
    data = _clean(data)
    if "phone" in data:
        phone = _phone(lead.account, data.pop("phone"))
        if phone != lead.phone and _phone_taken(lead.account_id, phone, exclude_id=lead.pk):
            raise _invalid("phone", "A lead with this phone number already exists.")
        lead.phone = phone
    if "assigned_to" in data:
        lead.assigned_to = _check_assignee(actor=user, assignee_id=data.pop("assigned_to"))
    if "is_opted_out" in data:
        opted_out = data.pop("is_opted_out")
        if opted_out != lead.is_opted_out:
            for field, value in _opt_out_fields(opted_out, data.get("opt_out_reason", "")).items():
                setattr(lead, field, value)
    tags = data.pop("tags", None)
    for field, value in data.items():
        setattr(lead, field, value)
    try:
        with transaction.atomic():
            lead.save()
    except IntegrityError:
        raise _invalid("phone", "A lead with this phone number already exists.") from None
    if tags is not None:
        lead.tags.set(tags_resolve(account_id=lead.account_id, values=tags))
    return lead


def lead_delete(*, user: User, lead: Lead) -> None:
    if not user.is_account_admin:
        raise PermissionDenied("Only account admins can delete leads.")
    lead.delete()


def lead_opt_out(*, lead: Lead, reason: str) -> bool:
    """Opts the lead out (STOP, an admin, an import); True if it changed."""
    fields = _opt_out_fields(True, clean_text(reason)[:200])
    return bool(Lead.objects.filter(pk=lead.pk, is_opted_out=False).update(**fields))


def lead_opt_in(*, lead: Lead) -> bool:
    return bool(Lead.objects.filter(pk=lead.pk, is_opted_out=True).update(**_opt_out_fields(False)))


# --- Bulk -------------------------------------------------------------------------------


def _bulk_targets(*, user: User, ids: list, scope: QuerySet[Lead] | None = None) -> QuerySet[Lead]:
    """The leads named by ``ids``, all of which the user must see; otherwise a
    VALIDATION_ERROR naming the others, and nothing is changed."""
    if not ids:
        raise _invalid("ids", "Give at least one lead id.")
    if len(ids) > MAX_BULK_IDS:
        raise _invalid("ids", f"At most {MAX_BULK_IDS} leads at a time.")
    wanted = {str(i) for i in ids}
    targets = (scope if scope is not None else lead_scope(user=user)).filter(pk__in=wanted)
    found = {str(pk) for pk in targets.values_list("pk", flat=True)}
    if found != wanted:
        missing = sorted(wanted - found)
        shown = ", ".join(missing[:20]) + (" …" if len(missing) > 20 else "")
        raise ValidationFailed(
            f"ids: {len(missing)} lead(s) not found: {shown}",
            errors={"ids": [f"Not found: {', '.join(missing)}"]},
        )
    return Lead.objects.filter(pk__in=wanted)


BULK_FIELDS = {"status", "segment", "source", "is_opted_out"}


@transaction.atomic
def lead_bulk_update(*, user: User, ids: list, fields: dict[str, Any]) -> int:
    """One UPDATE for every named lead; answers how many changed."""
    unknown = set(fields) - BULK_FIELDS
    if unknown or not fields:
        raise _invalid("fields", "Give one or more of: status, segment, source, isOptedOut.")
    changes = dict(fields)
    if "source" in changes:
        changes["source"] = clean_text(changes["source"])[:100]
    if "is_opted_out" in changes:
        changes.update(_opt_out_fields(changes.pop("is_opted_out"), f"Bulk update by {user.email}"))
    targets = _bulk_targets(user=user, ids=ids)
    return targets.update(**changes, updated_at=timezone.now())


@transaction.atomic
def lead_bulk_assign(*, user: User, ids: list, assignee_id) -> int:
    assignee = _check_assignee(actor=user, assignee_id=assignee_id)
    targets = _bulk_targets(user=user, ids=ids)
    return targets.update(assigned_to=assignee, updated_at=timezone.now())


@transaction.atomic
def lead_bulk_tag(*, user: User, ids: list, tags: Iterable[int | str]) -> int:
    """Adds the tags (ids or names; new names are created) to every named lead, in a
    fixed number of statements; answers how many leads were named."""
    targets = _bulk_targets(user=user, ids=ids)
    resolved = tags_resolve(account_id=user.account_id, values=tags)
    link = Lead.tags.through
    lead_ids = list(targets.values_list("pk", flat=True))
    link.objects.bulk_create(
        [link(lead_id=lead_id, tag_id=tag.pk) for lead_id in lead_ids for tag in resolved],
        ignore_conflicts=True,
        batch_size=1000,
    )
    targets.update(updated_at=timezone.now())
    return len(lead_ids)


@transaction.atomic
def lead_bulk_delete(*, user: User, ids: list) -> int:
    if not user.is_account_admin:
        raise PermissionDenied("Only account admins can delete leads.")
    targets = _bulk_targets(user=user, ids=ids)
    # Delete through the ORM so related rows (engagements, messages, tag links) cascade.
    _deleted, per_model = targets.delete()
    return per_model.get(Lead._meta.label, 0)


# --- Engagements ------------------------------------------------------------------------


def engagement_log(*, lead: Lead, type: str, notes: str = "", user: User | None = None, at=None) -> Engagement:
    if type not in Engagement.Type.values:
        raise _invalid("type", f"Use one of: {', '.join(Engagement.Type.values)}.")
    return Engagement.objects.create(lead=lead, type=type, notes=clean_text(notes), user=user, at=at or timezone.now())


# --- Lead-ingestion webhook -------------------------------------------------------------


INGEST_FIELDS = ("name", "email", "source", "inquiry")


@transaction.atomic
def lead_ingest(*, account: Account, phone: str, data: dict[str, Any]) -> tuple[Lead, bool]:
    """A lead from an outside form: a new phone creates the lead; a known one updates
    its non-empty fields and logs an engagement. Never a duplicate, even for two
    submissions at once. Answers (lead, created)."""
    cleaned = _clean({key: data.get(key) or "" for key in INGEST_FIELDS})
    return _ingest_phone(account=account, phone=_phone(account, phone), data=cleaned)


def _ingest_phone(*, account: Account, phone: str, data: dict[str, Any]) -> tuple[Lead, bool]:
    lead = Lead.objects.select_for_update().filter(account=account, phone=phone).first()
    if lead is None:
        try:
            with transaction.atomic():
                lead = Lead.objects.create(account=account, phone=phone, **data)
            return lead, True
        except IntegrityError:  # created by a concurrent submission: update it instead
            lead = Lead.objects.select_for_update().get(account=account, phone=phone)
    changed = {field: value for field, value in data.items() if value and getattr(lead, field) != value}
    for field, value in changed.items():
        setattr(lead, field, value)
    if changed:
        lead.save(update_fields=[*changed, "updated_at"])
    summary = "; ".join(f"{field}: {value}" for field, value in data.items() if value and field != "name")
    engagement_log(lead=lead, type=Engagement.Type.NOTE, notes=f"Submitted again through the lead webhook. {summary}")
    return lead, False
