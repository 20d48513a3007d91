"""The drip and scheduled-message pages of the dashboard.

Views parse the form, call the same selectors and services as the API
(campaigns.selectors / campaigns.services), and render or redirect; a service's
ValidationFailed becomes form errors, other domain errors flash messages. Admins
create, edit and delete drips; agents see them and enroll their leads."""

import contextlib
import uuid

from django.contrib import messages
from django.core.exceptions import PermissionDenied as Forbidden
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import User
from accounts.views import staff_page
from campaigns.forms import (
    DripForm,
    ScheduledMessageForm,
    StepForm,
    StepFormSet,
    add_drip_errors,
    add_scheduled_errors,
)
from campaigns.models import Drip, Enrollment, ScheduledMessage
from campaigns.selectors import drips as drip_selectors
from campaigns.selectors import scheduled as scheduled_selectors
from campaigns.services import drips as drip_services
from campaigns.services import scheduled as scheduled_services
from heroshhi.errors import DomainError, NotFound, ValidationFailed
from messaging.selectors import template_list

PAGE_SIZE = 25
MAX_ENROLL_IDS = drip_services.MAX_ENROLL


def _drip_or_404(user: User, drip_id) -> Drip:
    try:
        return drip_selectors.drip_get(user=user, drip_id=drip_id)
    except NotFound:
        raise Http404("Drip not found.") from None


def _admin_only(user: User) -> None:
    if not user.is_account_admin:
        raise Forbidden("Only account admins can manage drips.")


def _templates(user: User) -> list:
    return list(template_list(account=user.account))


# --- Drips ------------------------------------------------------------------------------


@staff_page
@require_http_methods(["GET"])
def drip_list_view(request: HttpRequest) -> HttpResponse:
    drips = list(drip_selectors.drip_list(user=request.user))
    counts = drip_selectors.drip_enrollment_counts(drips=drips)
    rows = [{"drip": drip, "steps": len(drip.steps.all()), "counts": counts[drip.pk]} for drip in drips]
    return render(request, "campaigns/drip_list.html", {"rows": rows})


def _drip_form_page(request: HttpRequest, drip: Drip | None) -> HttpResponse:
    user = request.user
    _admin_only(user)
    templates = _templates(user)
    if drip is None:
        initial, steps_initial = None, None
    else:
        initial = DripForm.initial_for(drip)
        steps_initial = [StepForm.initial_for(step) for step in drip.steps.all()]
    data = request.POST if request.method == "POST" else None
    form = DripForm(data, initial=initial)
    formset = StepFormSet(data, initial=steps_initial, templates=templates, prefix="steps")
    if data is not None and "add_step" in data:
        # "Add a step" without JavaScript: the same form again with one more empty row.
        grown = data.copy()
        try:
            total = int(grown.get("steps-TOTAL_FORMS", 0))
        except ValueError:
            total = 0
        grown["steps-TOTAL_FORMS"] = str(min(total + 1, StepFormSet.max_num))
        formset = StepFormSet(grown, initial=steps_initial, templates=templates, prefix="steps")
        return render(request, "campaigns/drip_form.html", {"form": form, "formset": formset, "drip": drip})
    status = 200
    if data is not None:
        valid = form.is_valid() & formset.is_valid()
        if valid:
            step_forms = formset.kept_forms()
            payload = {
                **{k: v for k, v in form.cleaned_data.items()},
                "steps": [step.service_data() for step in step_forms],
            }
            try:
                if drip is None:
                    drip = drip_services.drip_create(account=user.account, user=user, data=payload)
                    messages.success(request, f"Drip “{drip.name}” created.")
                else:
                    drip = drip_services.drip_update(drip=drip, user=user, data=payload)
                    messages.success(request, f"Drip “{drip.name}” saved.")
            except ValidationFailed as exc:
                add_drip_errors(form, step_forms, exc)
            else:
                return redirect("drip-detail", drip_id=drip.pk)
        status = 400
    return render(request, "campaigns/drip_form.html", {"form": form, "formset": formset, "drip": drip}, status=status)


@staff_page
@require_http_methods(["GET", "POST"])
def drip_create_view(request: HttpRequest) -> HttpResponse:
    return _drip_form_page(request, None)


@staff_page
@require_http_methods(["GET", "POST"])
def drip_edit_view(request: HttpRequest, drip_id) -> HttpResponse:
    return _drip_form_page(request, _drip_or_404(request.user, drip_id))


@staff_page
@require_http_methods(["GET"])
def drip_detail_view(request: HttpRequest, drip_id) -> HttpResponse:
    user = request.user
    drip = _drip_or_404(user, drip_id)
    status = request.GET.get("status") or ""
    if status not in Enrollment.Status.values:
        status = ""
    steps = list(drip.steps.all())
    by_position = {step.position: index + 1 for index, step in enumerate(steps)}
    page = Paginator(drip_selectors.enrollment_list(user=user, drip=drip, status=status or None), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    enrollments = [
        {"enrollment": e, "step_number": by_position.get(e.next_step) if e.status == Enrollment.Status.ACTIVE else None}
        for e in page.object_list
    ]
    context = {
        "drip": drip,
        "steps": steps,
        "counts": drip_selectors.drip_enrollment_counts(drips=[drip])[drip.pk],
        "page": page,
        "enrollments": enrollments,
        "status": status,
        "statuses": Enrollment.Status.choices,
    }
    return render(request, "campaigns/drip_detail.html", context)


@staff_page
@require_http_methods(["GET", "POST"])
def drip_delete_view(request: HttpRequest, drip_id) -> HttpResponse:
    user = request.user
    drip = _drip_or_404(user, drip_id)
    _admin_only(user)
    if request.method == "POST":
        try:
            drip_services.drip_delete(drip=drip, user=user)
        except DomainError as exc:
            messages.error(request, exc.message)
            return redirect("drip-detail", drip_id=drip.pk)
        messages.success(request, f"Drip “{drip.name}” deleted.")
        return redirect("drips")
    counts = drip_selectors.drip_enrollment_counts(drips=[drip])[drip.pk]
    return render(request, "campaigns/drip_delete_confirm.html", {"drip": drip, "counts": counts})


def _back(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or ""
    if target.startswith("/") and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return default


@staff_page
@require_POST
def drip_enroll_view(request: HttpRequest, drip_id=None) -> HttpResponse:
    """Enrolls the POSTed lead ids (``ids``, repeated) in the drip named by the URL or,
    from the leads list's bulk bar, by the ``drip`` field."""
    user = request.user
    drip_ref = drip_id if drip_id is not None else request.POST.get("drip", "")
    if drip_id is None and not drip_ref:
        messages.error(request, "Choose a drip to enroll the leads in.")
        return redirect(_back(request, reverse("leads:list")))
    drip = _drip_or_404(user, drip_ref)
    back = _back(request, reverse("drip-detail", args=[drip.pk]))
    given = request.POST.getlist("ids")[: MAX_ENROLL_IDS + 1]
    if not given:
        messages.error(request, "Select the leads to enroll first.")
        return redirect(back)
    ids = []
    for value in given:
        with contextlib.suppress(ValueError):  # names no lead: counted as not found
            ids.append(uuid.UUID(value))
    try:
        result = drip_services.drip_enroll(drip=drip, user=user, lead_ids=ids)
    except DomainError as exc:
        messages.error(request, f"Nobody was enrolled: {exc.message}")
        return redirect(back)
    result.invalid += len(given) - len(ids)
    parts = [f"{result.enrolled} lead{'s' if result.enrolled != 1 else ''} enrolled in “{drip.name}”"]
    for count, label in (
        (result.already, "already enrolled"),
        (result.skipped_opted_out, "opted out"),
        (result.skipped_converted, "converted"),
        (result.invalid, "not found"),
    ):
        if count:
            parts.append(f"{count} {label}")
    messages.success(request, "; ".join(parts) + ".")
    return redirect(back)


@staff_page
@require_POST
def enrollment_stop_view(request: HttpRequest, drip_id, enrollment_id: int) -> HttpResponse:
    user = request.user
    drip = _drip_or_404(user, drip_id)
    try:
        enrollment = drip_selectors.enrollment_get(user=user, drip=drip, enrollment_id=enrollment_id)
    except NotFound:
        raise Http404("Enrollment not found.") from None
    stopped = drip_services.enrollments_stop(drip=drip, enrollment_ids=[enrollment.pk])
    if stopped:
        messages.success(request, f"{enrollment.lead.name} will get no more steps of this drip.")
    else:
        messages.info(request, f"{enrollment.lead.name}'s enrollment had already finished.")
    return redirect(_back(request, reverse("drip-detail", args=[drip.pk])))


# --- Scheduled messages -----------------------------------------------------------------

SCHEDULED_TABS = (
    ("pending", "Pending"),
    ("sent", "Sent"),
    ("failed", "Failed"),
    ("cancelled", "Cancelled"),
    ("all", "All"),
)


def _scheduled_or_404(user: User, ref) -> ScheduledMessage:
    try:
        return scheduled_selectors.scheduled_message_get(user=user, ref=ref)
    except NotFound:
        raise Http404("Scheduled message not found.") from None


@staff_page
@require_http_methods(["GET"])
def scheduled_list_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    tab = request.GET.get("status") or "pending"
    if tab not in dict(SCHEDULED_TABS):
        tab = "pending"
    if tab == "pending":
        scheduled = scheduled_selectors.scheduled_message_pending(user=user)
    else:
        scheduled = scheduled_selectors.scheduled_message_list(user=user, status=None if tab == "all" else tab)
    page = Paginator(scheduled, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"page": page, "items": list(page.object_list), "tab": tab, "tabs": SCHEDULED_TABS}
    return render(request, "campaigns/scheduled_list.html", context)


@staff_page
@require_http_methods(["GET", "POST"])
def scheduled_create_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    form = ScheduledMessageForm(request.POST or None, templates=_templates(user))
    if request.method == "POST":
        if form.is_valid():
            try:
                scheduled = scheduled_services.scheduled_message_create(
                    user=user,
                    recipients=form.recipient_list(),
                    scheduled_time=form.cleaned_data["scheduled_time"],
                    message=form.cleaned_data["message"],
                    template=form.template_ref(),
                    recurrence=form.cleaned_data["recurrence"],
                )
            except ValidationFailed as exc:
                add_scheduled_errors(form, exc)
            except DomainError as exc:  # e.g. the template is no longer approved
                form.add_error("template" if form.cleaned_data.get("template") else None, exc.message)
            else:
                messages.success(request, "Message scheduled.")
                return redirect("scheduled-detail", scheduled_id=scheduled.pk)
        return render(request, "campaigns/scheduled_form.html", {"form": form}, status=400)
    return render(request, "campaigns/scheduled_form.html", {"form": form})


@staff_page
@require_http_methods(["GET"])
def scheduled_detail_view(request: HttpRequest, scheduled_id) -> HttpResponse:
    scheduled = _scheduled_or_404(request.user, scheduled_id)
    context = {
        "item": scheduled,
        "delivery": scheduled_selectors.scheduled_message_delivery(scheduled_message=scheduled),
        "next_id": scheduled_selectors.scheduled_message_next_id(scheduled_message=scheduled),
    }
    return render(request, "campaigns/scheduled_detail.html", context)


def _status_change(request: HttpRequest, scheduled: ScheduledMessage, status: str, done: str) -> HttpResponse:
    try:
        scheduled_services.scheduled_message_status_set(scheduled_message=scheduled, status=status)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done)
    return redirect("scheduled-detail", scheduled_id=scheduled.pk)


@staff_page
@require_http_methods(["GET", "POST"])
def scheduled_cancel_view(request: HttpRequest, scheduled_id) -> HttpResponse:
    scheduled = _scheduled_or_404(request.user, scheduled_id)
    if request.method == "POST":
        return _status_change(request, scheduled, ScheduledMessage.Status.CANCELLED, "Cancelled: nothing will be sent.")
    return render(request, "campaigns/scheduled_cancel_confirm.html", {"item": scheduled})


@staff_page
@require_POST
def scheduled_reactivate_view(request: HttpRequest, scheduled_id) -> HttpResponse:
    scheduled = _scheduled_or_404(request.user, scheduled_id)
    return _status_change(request, scheduled, ScheduledMessage.Status.PENDING, "Scheduled again.")
