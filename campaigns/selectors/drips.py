"""Reads of drips and enrollments, scoped to the user's account (and, for an agent's
enrollments, to the leads the agent may see). The API views and the dashboard call
these same functions."""

import uuid

from django.db.models import Count, Prefetch, Q, QuerySet

from accounts.models import User
from campaigns.models import Drip, DripStep, Enrollment
from heroshhi.errors import NotFound


def _steps_prefetch() -> Prefetch:
    return Prefetch("steps", queryset=DripStep.objects.order_by("position"))


def drip_list(*, user: User) -> QuerySet[Drip]:
    """The account's drips by name, with their steps in order (one extra query)."""
    return Drip.objects.filter(account_id=user.account_id).prefetch_related(_steps_prefetch()).order_by("name", "pk")


def drip_choices(*, user: User) -> list[tuple]:
    """(id, name) of the account's active drips, by name: what leads can be enrolled
    in (a paused drip refuses enrollments). One query."""
    return list(
        Drip.objects.filter(account_id=user.account_id, is_active=True).order_by("name", "pk").values_list("pk", "name")
    )


def drip_get(*, user: User, drip_id) -> Drip:
    """The drip, or NotFound: another account's drip answers like a missing one."""
    try:
        drip_uuid = uuid.UUID(str(drip_id))
    except ValueError:
        raise NotFound("Drip not found.") from None
    drip = (
        Drip.objects.filter(account_id=user.account_id, pk=drip_uuid)
        .select_related("account")
        .prefetch_related(_steps_prefetch())
        .first()
    )
    if drip is None:
        raise NotFound("Drip not found.")
    return drip


EMPTY_COUNTS = {status: 0 for status in Enrollment.Status.values}


def drip_enrollment_counts(*, drips) -> dict:
    """Enrollments per status for each drip, in one grouped query:
    ``{drip id: {"active": n, "completed": n, "stopped": n}}``. Counts are the drip's,
    whoever enrolled the leads."""
    ids = [drip.pk for drip in drips]
    counts = {drip_id: dict(EMPTY_COUNTS) for drip_id in ids}
    if not ids:
        return counts
    rows = Enrollment.objects.filter(drip_id__in=ids).values_list("drip_id", "status").annotate(n=Count("pk"))
    for drip_id, status, n in rows.order_by():
        counts[drip_id][status] = n
    return counts


def _visible(user: User) -> Q:
    if user.is_account_admin:
        return Q()
    return Q(lead__assigned_to=user) | Q(lead__assigned_to__isnull=True)


def enrollment_list(*, user: User, drip: Drip, status: str | None = None) -> QuerySet[Enrollment]:
    """The drip's enrollments, latest first, with their lead; an agent sees those of
    the leads they may see (their own and unassigned ones)."""
    enrollments = Enrollment.objects.filter(drip=drip, account_id=user.account_id).filter(_visible(user))
    if status:
        enrollments = enrollments.filter(status=status)
    return enrollments.select_related("lead").order_by("-enrolled_at", "-pk")


def enrollment_get(*, user: User, drip: Drip, enrollment_id) -> Enrollment:
    """One enrollment of the drip the user may see, or NotFound."""
    try:
        pk = int(enrollment_id)
    except (TypeError, ValueError):
        raise NotFound("Enrollment not found.") from None
    enrollment = enrollment_list(user=user, drip=drip).filter(pk=pk).first()
    if enrollment is None:
        raise NotFound("Enrollment not found.")
    return enrollment
