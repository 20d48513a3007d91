"""The broadcast pages of the dashboard: the list, composing one (text or an approved
template, to a filter or to leads ticked on the leads list, now, later or as a draft),
its detail with live totals, sending a draft and cancelling.

Views parse the form, call the same selectors and services as the API
(campaigns/api/broadcasts.py) and render or redirect; a service's ValidationFailed
becomes form errors and nothing is created. As in the API, admins see and manage every
broadcast of the account, agents their own, sent to the leads they may see; another
account's broadcast (or, for an agent, a colleague's) is a 404."""

import contextlib

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import User
from accounts.selectors import user_list_for_account
from accounts.views import staff_page
from campaigns.forms_broadcasts import (
    ACTIONS,
    AudienceFilterForm,
    BroadcastForm,
    add_broadcast_errors,
    parse_lead_ids,
)
from campaigns.models import Broadcast
from campaigns.selectors import broadcasts as selectors
from campaigns.services import broadcasts as services
from campaigns.services.variables import render_param, render_variables, select_related_for
from heroshhi.errors import DomainError, NotFound, ValidationFailed
from leads.models import Lead, Tag
from leads.selectors import tag_choices
from messaging import selectors as messaging_selectors
from messaging import services as messaging_services
from messaging.models import Template
from messaging.providers import ProviderError

PAGE_SIZE = 25
# Statuses whose detail page polls for fresh totals.
LIVE_STATUSES = (Broadcast.Status.SCHEDULED, Broadcast.Status.SENDING)
POLL_SECONDS = 2
STATUS_TABS = (("", "All"), *Broadcast.Status.choices)
TOTAL_KEYS = ("queued", "sent", "delivered", "read", "failed")


def _broadcast_or_404(user: User, broadcast_id) -> Broadcast:
    try:
        return selectors.broadcast_get(user=user, broadcast_id=broadcast_id)
    except NotFound:
        raise Http404("Broadcast not found.") from None


def _templates(user: User) -> list[Template]:
    """The account's templates, loaded on first use as the API's template list does
    (a failure shows what is stored)."""
    account = user.account
    if messaging_selectors.templates_need_sync(account=account):
        with contextlib.suppress(ProviderError):
            messaging_services.templates_sync(account=account)
    return list(messaging_selectors.template_list(account=account))


def _progress(broadcast: Broadcast) -> dict:
    """The numbers the list and the detail show about its messages."""
    totals = broadcast.totals
    done = sum(totals[key] for key in ("sent", "delivered", "read", "failed"))
    total = done + totals["queued"]
    return {
        "done": done,
        "total": total,
        "percent": round(100 * done / total) if total else (100 if broadcast.status == "completed" else 0),
        "skipped_opted_out": broadcast.skipped_opted_out + totals["opted_out_at_send"],
    }


# --- The list -----------------------------------------------------------------------------


@staff_page
@require_http_methods(["GET"])
def broadcast_list_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    status = request.GET.get("status") or ""
    if status not in Broadcast.Status.values:
        status = ""
    page = Paginator(selectors.broadcast_list(user=user, status=status or None), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    broadcasts = selectors.broadcasts_with_totals(list(page.object_list))
    rows = [{"broadcast": b, "progress": _progress(b)} for b in broadcasts]
    context = {"page": page, "rows": rows, "status": status, "tabs": STATUS_TABS}
    return render(request, "campaigns/broadcast_list.html", context)


# --- Compose ------------------------------------------------------------------------------


def _forms(request: HttpRequest, data, *, lead_ids: list[str]):
    user = request.user
    team = list(user_list_for_account(user=user)) if user.is_account_admin else []
    tags = list(tag_choices(account_id=user.account_id))
    templates = _templates(user)
    form = BroadcastForm(data, templates=templates, selected=len(lead_ids))
    form.templates = templates
    audience_form = AudienceFilterForm(data, user=user, team=team, tags=tags, prefix="f")
    return form, audience_form


def _audience(form: BroadcastForm, audience_form: AudienceFilterForm, lead_ids: list[str]) -> dict:
    """The service's audience arguments: lead_ids or filters."""
    if form.uses_selection():
        return {"lead_ids": lead_ids, "filters": None}
    return {"lead_ids": None, "filters": audience_form.filters()}


def _sample_preview(user: User, audience: dict, form: BroadcastForm) -> dict | None:
    """The message as the first lead of the audience would get it (the same variable
    rendering as the send), or None without a lead or content."""
    data = form.cleaned_data if hasattr(form, "cleaned_data") else {}
    text = (data.get("message") or "").strip()
    ref = form.template_ref() if data.get("template") else None
    if not text and ref is None:
        return None
    texts = [text] if text else list(ref.params)
    leads = selectors.audience_leads(user=user, audience=audience).filter(is_opted_out=False)
    related = select_related_for(texts)
    if related:  # select_related() without names would follow every foreign key
        leads = leads.select_related(*related)
    lead = leads.order_by("name", "pk").first()
    if lead is None:
        return None
    if text:
        return {"lead": lead, "body": render_variables(text, lead=lead)}
    params = [render_param(param, lead=lead) for param in ref.params]
    template = next((t for t in form.templates if (t.name, t.language) == (ref.name, ref.language)), None)
    body = ""
    if template is not None and all(param is not None for param in params):
        body = messaging_services._render_template_body(template, params)
    return {"lead": lead, "body": body, "params": params, "template": ref.name}


def _audience_counts(user: User, form, audience_form, lead_ids) -> tuple[dict | None, dict | None, str]:
    """(counts, normalized audience, error text) for the chosen audience."""
    try:
        audience = selectors.audience_normalize(user=user, **_audience(form, audience_form, lead_ids))
    except ValidationFailed as exc:
        return None, None, exc.message.split(": ", 1)[-1]
    return selectors.audience_counts(user=user, audience=audience), audience, ""


@staff_page
@require_http_methods(["GET", "POST"])
def broadcast_create_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    source = request.POST if request.method == "POST" else request.GET
    lead_ids, invalid_ids = parse_lead_ids(source.getlist("ids"))
    action = request.POST.get("action") if request.method == "POST" else None
    form, audience_form = _forms(request, request.POST if request.method == "POST" else None, lead_ids=lead_ids)
    context = {"form": form, "audience_form": audience_form, "lead_ids": lead_ids, "poll": False}
    if invalid_ids:
        messages.warning(request, f"Left out {len(invalid_ids)} value(s) that are not lead ids.")
    if request.method == "GET":
        return render(request, "campaigns/broadcast_form.html", context)

    if action not in ACTIONS:
        action = "preview"
    valid = form.is_valid() & audience_form.is_valid()
    if valid and action != "preview":
        form.check_action(action)
        valid = not form.errors
    if not valid:
        return render(request, "campaigns/broadcast_form.html", context, status=400)
    if action == "preview":
        counts, audience, error = _audience_counts(user, form, audience_form, lead_ids)
        context.update(counts=counts, audience_error=error, previewed=True)
        if audience is not None:
            context["sample"] = _sample_preview(user, audience, form)
        return render(request, "campaigns/broadcast_form.html", context)
    try:
        broadcast = services.broadcast_create(
            user=user,
            name=form.cleaned_data.get("name") or "",
            text=form.cleaned_data.get("message") or "",
            template=form.template_ref(),
            scheduled_at=form.cleaned_data.get("scheduled_at") if action != "send" else None,
            draft=action == "draft",
            **_audience(form, audience_form, lead_ids),
        )
    except DomainError as exc:
        add_broadcast_errors(form, audience_form, exc)
        return render(request, "campaigns/broadcast_form.html", context, status=400)
    texts = {
        Broadcast.Status.DRAFT: "Broadcast saved as a draft.",
        Broadcast.Status.SCHEDULED: "Broadcast scheduled.",
        Broadcast.Status.SENDING: f"Broadcast started: {broadcast.recipients} message(s) queued.",
    }
    messages.success(request, texts.get(broadcast.status, f"Broadcast {broadcast.get_status_display().lower()}."))
    return redirect("broadcast-detail", broadcast_id=broadcast.pk)


@staff_page
@require_http_methods(["GET"])
def broadcast_audience_view(request: HttpRequest) -> HttpResponse:
    """The compose page's live recipient count (and sample preview), an htmx fragment
    fetched with the form's current values."""
    user = request.user
    lead_ids, _ = parse_lead_ids(request.GET.getlist("ids"))
    form, audience_form = _forms(request, request.GET, lead_ids=lead_ids)
    form.is_valid()
    audience_form.is_valid()
    context: dict = {"counts": None, "audience_error": "", "sample": None}
    if audience_form.errors:
        context["audience_error"] = "Check the filter: " + "; ".join(
            str(error) for errors in audience_form.errors.values() for error in errors
        )
    else:
        counts, audience, error = _audience_counts(user, form, audience_form, lead_ids)
        context.update(counts=counts, audience_error=error)
        if audience is not None and not form.errors.get("message") and not form.errors.get("template"):
            context["sample"] = _sample_preview(user, audience, form)
    return render(request, "campaigns/broadcast_audience.html", context)


# --- Detail, send a draft, cancel ---------------------------------------------------------


def _audience_text(broadcast: Broadcast) -> str:
    """The stored audience in words: tag and assignee names, status and segment labels
    (at most two small queries, whatever the audience's size)."""
    audience = broadcast.audience or {}
    if "leadIds" in audience:
        count = len(audience["leadIds"])
        return f"{count} selected lead{'s' if count != 1 else ''}"
    criteria = audience.get("filter") or {}
    if not criteria:
        return "Every lead"
    parts = []
    for key, choices in (("status", Lead.Status), ("segment", Lead.Segment)):
        if criteria.get(key):
            labels = dict(choices.choices)
            parts.append(f"{key} {' or '.join(str(labels.get(v, v)) for v in criteria[key])}")
    if criteria.get("tags"):
        names = Tag.objects.filter(account_id=broadcast.account_id, pk__in=criteria["tags"]).values_list(
            "name", flat=True
        )
        parts.append(f"tagged {' or '.join(sorted(names)) or '(deleted tags)'}")
    if criteria.get("source"):
        parts.append(f"source {criteria['source']}")
    assigned_to = criteria.get("assignedTo")
    if assigned_to == "unassigned":
        parts.append("unassigned")
    elif assigned_to:
        person = User.objects.filter(account_id=broadcast.account_id, pk=assigned_to).first()
        parts.append(f"assigned to {(person.name or person.email) if person else 'a former member'}")
    return "Leads with " + "; ".join(parts)


def _detail_context(broadcast: Broadcast) -> dict:
    totals = broadcast.totals
    progress = _progress(broadcast)
    bars = [{"key": key, "label": key.capitalize(), "count": totals[key]} for key in TOTAL_KEYS]
    return {
        "broadcast": broadcast,
        "audience_text": _audience_text(broadcast),
        "progress": progress,
        "bars": bars,
        "bar_max": max(broadcast.recipients, progress["total"], 1),
        "live": broadcast.status in LIVE_STATUSES,
        "poll_seconds": POLL_SECONDS,
        "can_cancel": broadcast.status
        in (Broadcast.Status.DRAFT, Broadcast.Status.SCHEDULED, Broadcast.Status.SENDING),
    }


@staff_page
@require_http_methods(["GET"])
def broadcast_detail_view(request: HttpRequest, broadcast_id) -> HttpResponse:
    broadcast = _broadcast_or_404(request.user, broadcast_id)
    context = _detail_context(broadcast)
    if getattr(request, "htmx", False):
        return render(request, "campaigns/broadcast_live.html", {**context, "oob": True})
    return render(request, "campaigns/broadcast_detail.html", context)


@staff_page
@require_POST
def broadcast_send_view(request: HttpRequest, broadcast_id) -> HttpResponse:
    broadcast = _broadcast_or_404(request.user, broadcast_id)
    try:
        broadcast = services.broadcast_send(broadcast=broadcast)
    except DomainError as exc:
        messages.error(request, f"Not sent: {exc.message.split(': ', 1)[-1] if exc.errors else exc.message}")
    else:
        if broadcast.status == Broadcast.Status.SCHEDULED:
            messages.success(request, "Broadcast scheduled.")
        else:
            messages.success(request, f"Broadcast {broadcast.get_status_display().lower()}.")
    return redirect("broadcast-detail", broadcast_id=broadcast.pk)


@staff_page
@require_http_methods(["GET", "POST"])
def broadcast_cancel_view(request: HttpRequest, broadcast_id) -> HttpResponse:
    broadcast = _broadcast_or_404(request.user, broadcast_id)
    if request.method == "POST":
        try:
            broadcast = services.broadcast_cancel(broadcast=broadcast)
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            dropped = broadcast.cancelled_unsent
            extra = f" {dropped} queued message{'s' if dropped != 1 else ''} dropped." if dropped else ""
            messages.success(request, "Broadcast cancelled." + extra)
        return redirect("broadcast-detail", broadcast_id=broadcast.pk)
    return render(request, "campaigns/broadcast_cancel_confirm.html", _detail_context(broadcast))
