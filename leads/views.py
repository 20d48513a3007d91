"""The lead pages of the dashboard: the list with filters and bulk actions, the
create and edit forms, and the lead page (details, tags, activity; its WhatsApp
conversation is messaging.views').

Views parse the form, call one selector or service (the same ones as the API), and
render or redirect; domain errors become form errors or flash messages."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import User
from accounts.selectors import user_list_for_account
from accounts.views import staff_page
from campaigns.selectors import drips as drip_selectors
from heroshhi.errors import DomainError, NotFound, ValidationFailed
from leads import selectors, services
from leads.forms import (
    SORTS,
    BulkActionForm,
    EngagementForm,
    LeadFilterForm,
    LeadForm,
    LeadTagsForm,
    OptOutForm,
    add_service_errors,
)
from leads.models import Lead

PAGE_SIZE = 25
ENGAGEMENTS_ON_PAGE = 50
BULK_CONFIRM_NAMES = 20


def _team(user: User) -> list[User]:
    return list(user_list_for_account(user=user))


def lead_or_404(user: User, lead_id) -> Lead:
    """The lead if the user may see it; 404 otherwise (another account's lead, or an
    agent's colleague's, answers exactly like a missing one)."""
    try:
        return selectors.lead_get(user=user, lead_id=lead_id)
    except NotFound:
        raise Http404("Lead not found.") from None


def _list_url(request: HttpRequest) -> str:
    """Where to go back to after a bulk action: the list with its filters, or the plain list."""
    target = request.POST.get("next") or ""
    list_url = reverse("leads:list")
    if target.startswith(list_url) and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return list_url


def _form_status(form) -> int:
    return 400 if form.is_bound and form.errors else 200


# --- The list ---------------------------------------------------------------------------


@staff_page
@require_http_methods(["GET"])
def lead_list_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    team = _team(user)
    tags = list(selectors.tag_choices(account_id=user.account_id))
    form = LeadFilterForm(request.GET or None, user=user, team=team, tags=tags)
    if form.is_bound:
        form.is_valid()  # invalid values are shown and left out; the rest still filter
    try:
        leads = selectors.lead_list(user=user, filters=form.filters())
    except ValidationFailed as exc:
        add_service_errors(form, exc)
        leads = selectors.lead_list(user=user)
    order = SORTS[form.sort_key()][1] or (F("last_message_at").desc(nulls_last=True), "-created_at", "-id")
    page = Paginator(leads.order_by(*order), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "form": form,
        "page": page,
        "leads": list(page.object_list),
        "filtered": form.is_bound and form.is_filtered(),
        "bulk_form": BulkActionForm(user=user, team=team, auto_id="bulk-%s"),
        "tags": tags,
        # Active drips for the bulk bar's "Enroll" (paused ones refuse enrollments).
        "drips": drip_selectors.drip_choices(user=user),
        "next": request.get_full_path(),
    }
    return render(request, "leads/list.html", context)


def _apply_bulk(user: User, data: dict) -> str:
    """Runs the bulk action through leads.services; answers the flash message."""
    ids, action = data["ids"], data["action"]
    if action == "assign":
        assignee = None if data["assignee"] == "unassigned" else data["assignee"]
        count = services.lead_bulk_assign(user=user, ids=ids, assignee_id=assignee)
        return f"{count} lead{'s' if count != 1 else ''} {'unassigned' if assignee is None else 'assigned'}."
    if action == "tag":
        count = services.lead_bulk_tag(user=user, ids=ids, tags=[data["tag"].strip()])
        return f"Tag “{data['tag'].strip()}” added to {count} lead{'s' if count != 1 else ''}."
    if action == "delete":
        count = services.lead_bulk_delete(user=user, ids=ids)
        return f"{count} lead{'s' if count != 1 else ''} deleted."
    fields = {
        "status": lambda: {"status": data["status"]},
        "segment": lambda: {"segment": "" if data["segment"] == "none" else data["segment"]},
        "opt_out": lambda: {"is_opted_out": True},
        "opt_in": lambda: {"is_opted_out": False},
    }[action]()
    count = services.lead_bulk_update(user=user, ids=ids, fields=fields)
    return f"{count} lead{'s' if count != 1 else ''} updated."


@staff_page
@require_POST
def lead_bulk_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    back = _list_url(request)
    form = BulkActionForm(request.POST, user=user, team=_team(user))
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect(back)
    data = form.cleaned_data
    if data["action"] == "delete" and not data["confirm"]:
        # A destructive action: ask first, on a page that works without JavaScript.
        chosen = selectors.lead_scope(user=user).filter(pk__in=data["ids"]).order_by("name")
        context = {
            "ids": data["ids"],
            "count": len(data["ids"]),
            "names": list(chosen.values_list("name", flat=True)[:BULK_CONFIRM_NAMES]),
            "next": back,
        }
        return render(request, "leads/bulk_delete_confirm.html", context)
    try:
        messages.success(request, _apply_bulk(user, data))
    except DomainError as exc:
        messages.error(request, f"Nothing was changed: {exc.message}")
    return redirect(back)


# --- Create and edit --------------------------------------------------------------------


@staff_page
@require_http_methods(["GET", "POST"])
def lead_create_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    form = LeadForm(request.POST or None, user=user, team=_team(user))
    if request.method == "POST" and form.is_valid():
        try:
            lead = services.lead_create(user=user, data=form.service_data())
        except ValidationFailed as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Lead “{lead.name}” created.")
            return redirect("leads:detail", lead_id=lead.pk)
    return render(request, "leads/form.html", {"form": form, "lead": None}, status=_form_status(form))


@staff_page
@require_http_methods(["GET", "POST"])
def lead_edit_view(request: HttpRequest, lead_id) -> HttpResponse:
    user = request.user
    lead = lead_or_404(user, lead_id)
    form = LeadForm(request.POST or None, user=user, team=_team(user), initial=LeadForm.initial_for(lead))
    if request.method == "POST" and form.is_valid():
        try:
            services.lead_update(user=user, lead=lead, data=form.service_data())
        except ValidationFailed as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Lead saved.")
            return redirect("leads:detail", lead_id=lead.pk)
    return render(request, "leads/form.html", {"form": form, "lead": lead}, status=_form_status(form))


@staff_page
@require_http_methods(["GET", "POST"])
def lead_delete_view(request: HttpRequest, lead_id) -> HttpResponse:
    user = request.user
    lead = lead_or_404(user, lead_id)
    if request.method == "POST":
        try:
            services.lead_delete(user=user, lead=lead)
        except DomainError as exc:
            messages.error(request, exc.message)
            return redirect("leads:detail", lead_id=lead.pk)
        messages.success(request, f"Lead “{lead.name}” deleted.")
        return redirect("leads:list")
    return render(request, "leads/delete_confirm.html", {"lead": lead})


# --- The lead page ----------------------------------------------------------------------


def _detail_context(request: HttpRequest, lead: Lead, **forms) -> dict:
    from messaging.views import conversation_context  # messaging's pages build on the lead's

    return {
        "lead": lead,
        "engagements": list(selectors.engagement_list(lead=lead)[:ENGAGEMENTS_ON_PAGE]),
        "engagement_form": forms.get("engagement_form") or EngagementForm(),
        "tags_form": forms.get("tags_form") or LeadTagsForm(),
        "opt_out_form": OptOutForm(),
        **conversation_context(
            request, lead, text_form=forms.get("text_form"), template_form=forms.get("template_form")
        ),
    }


@staff_page
@require_http_methods(["GET"])
def lead_detail_view(request: HttpRequest, lead_id) -> HttpResponse:
    lead = lead_or_404(request.user, lead_id)
    return render(request, "leads/detail.html", _detail_context(request, lead))


def render_lead_page(request: HttpRequest, lead: Lead, *, status: int = 200, **forms) -> HttpResponse:
    """The lead page again, with a form's errors (a post that did not go through)."""
    return render(request, "leads/detail.html", _detail_context(request, lead, **forms), status=status)


@staff_page
@require_POST
def lead_engagement_view(request: HttpRequest, lead_id) -> HttpResponse:
    lead = lead_or_404(request.user, lead_id)
    form = EngagementForm(request.POST)
    if form.is_valid():
        try:
            services.engagement_log(lead=lead, user=request.user, **form.cleaned_data)
        except ValidationFailed as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Activity logged.")
            return redirect(reverse("leads:detail", args=[lead.pk]) + "#activity")
    return render_lead_page(request, lead, status=400, engagement_form=form)


@staff_page
@require_POST
def lead_tags_add_view(request: HttpRequest, lead_id) -> HttpResponse:
    lead = lead_or_404(request.user, lead_id)
    form = LeadTagsForm(request.POST)
    if form.is_valid():
        try:
            added = services.lead_add_tags(lead=lead, values=form.cleaned_data["tags"])
        except ValidationFailed as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Tag{'s' if len(added) != 1 else ''} added: {', '.join(t.name for t in added)}.")
            return redirect("leads:detail", lead_id=lead.pk)
    return render_lead_page(request, lead, status=400, tags_form=form)


@staff_page
@require_POST
def lead_tag_remove_view(request: HttpRequest, lead_id, tag_id: int) -> HttpResponse:
    lead = lead_or_404(request.user, lead_id)
    try:
        tag = selectors.tag_get(account_id=request.user.account_id, tag_id=tag_id)
    except NotFound:
        raise Http404("Tag not found.") from None
    services.lead_remove_tag(lead=lead, tag=tag)
    messages.success(request, f"Tag “{tag.name}” removed.")
    return redirect("leads:detail", lead_id=lead.pk)


@staff_page
@require_POST
def lead_opt_out_view(request: HttpRequest, lead_id) -> HttpResponse:
    lead = lead_or_404(request.user, lead_id)
    form = OptOutForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    reason = reason or f"Opted out by {request.user.name or request.user.email} in the dashboard"
    if services.lead_opt_out(lead=lead, reason=reason):
        messages.success(request, "The contact is opted out: no message will be sent to them.")
    return redirect("leads:detail", lead_id=lead.pk)


@staff_page
@require_POST
def lead_opt_in_view(request: HttpRequest, lead_id) -> HttpResponse:
    lead = lead_or_404(request.user, lead_id)
    if services.lead_opt_in(lead=lead):
        messages.success(request, "The contact is opted back in.")
    return redirect("leads:detail", lead_id=lead.pk)
