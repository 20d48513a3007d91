"""A lead's WhatsApp conversation on the lead page: the thread (polled by htmx so new
messages and status ticks appear without a reload) and the reply box, which sends
through messaging.services.message_send like every other path."""

import contextlib

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import reswap, retarget

from accounts.views import staff_page
from heroshhi.errors import DomainError
from leads.models import Lead
from leads.views import lead_or_404, render_lead_page
from messaging import selectors, services
from messaging.forms import ReplyTemplateForm, ReplyTextForm
from messaging.models import Message, Template
from messaging.providers import ProviderError

# Messages shown in the thread (the newest ones) and how often it is refreshed.
THREAD_SIZE = 100
POLL_SECONDS = 3


def _approved_templates(account) -> list[Template]:
    """The templates a reply can use, loaded from the provider on first use (as the
    API's template list does); on a provider error, what is stored."""
    if selectors.templates_need_sync(account=account):
        with contextlib.suppress(ProviderError):
            services.templates_sync(account=account)
    return [t for t in selectors.template_list(account=account) if t.status == Template.Status.APPROVED]


def reply_state(lead: Lead) -> str:
    """What the reply box offers: nothing (opted out), text and templates (window
    open), or templates only (window closed)."""
    if lead.is_opted_out:
        return "opted_out"
    return "open" if services.window_open(lead) else "closed"


def _thread_context(request: HttpRequest, lead: Lead) -> dict:
    newest = list(selectors.conversation(lead=lead)[: THREAD_SIZE + 1])
    thread = list(reversed(newest[:THREAD_SIZE]))
    # Showing the conversation is the team reading it (HeyDoc's unread count). Only
    # when something is unread: the thread is polled, and most polls change nothing.
    if any(m.direction == Message.Direction.INBOUND and not m.is_read for m in thread):
        services.messages_mark_read(lead=lead)
    state = reply_state(lead)
    return {
        "lead": lead,
        "thread": thread,
        "thread_truncated": len(newest) > THREAD_SIZE,
        "reply_state": state,
        "window_closes_at": lead.last_inbound_at + services.WINDOW if state == "open" else None,
        "poll_seconds": POLL_SECONDS,
    }


def _reply_context(request: HttpRequest, lead: Lead, *, text_form=None, template_form=None) -> dict:
    templates = _approved_templates(request.user.account)
    return {
        "templates": templates,
        "text_form": text_form or ReplyTextForm(),
        "template_form": template_form or ReplyTemplateForm(templates=templates),
    }


def conversation_context(request: HttpRequest, lead: Lead, *, text_form=None, template_form=None) -> dict:
    """The thread and the reply box, for the lead page."""
    return {
        **_thread_context(request, lead),
        **_reply_context(request, lead, text_form=text_form, template_form=template_form),
    }


@staff_page
@require_http_methods(["GET"])
def conversation_view(request: HttpRequest, lead_id) -> HttpResponse:
    """The thread alone (htmx polls it). When the reply box the page shows no longer
    fits (a message opened the window, the contact opted out), a fresh one comes
    along out of band."""
    lead = lead_or_404(request.user, lead_id)
    context = _thread_context(request, lead)
    if request.GET.get("state") not in (None, context["reply_state"]):
        context.update(_reply_context(request, lead), reply_box_oob=True)
    return render(request, "messaging/_conversation.html", context)


@staff_page
@require_POST
def reply_view(request: HttpRequest, lead_id) -> HttpResponse:
    lead = lead_or_404(request.user, lead_id)
    account = request.user.account
    kind = request.POST.get("kind")
    text_form = template_form = None
    if kind == "template":
        form = template_form = ReplyTemplateForm(request.POST, templates=_approved_templates(account))
    else:
        form = text_form = ReplyTextForm(request.POST)
    if form.is_valid():
        try:
            message = services.message_send(
                account=account,
                lead=lead,
                text=form.cleaned_data.get("message", ""),
                template=template_form.template_ref() if template_form else None,
                user=request.user,
                source=Message.Source.DASHBOARD,
            )
            services.raise_for_failed(message)
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            return _sent(request, lead, message)
    # Not sent: the reply box again, with the reason.
    lead = lead_or_404(request.user, lead.pk)  # fresh: the send may have found it opted out
    if request.htmx:
        context = {
            **_thread_context(request, lead),
            **_reply_context(request, lead, text_form=text_form, template_form=template_form),
        }
        response = render(request, "messaging/_reply_box.html", context)
        return reswap(retarget(response, "#reply-box"), "outerHTML")
    return render_lead_page(request, lead, status=400, text_form=text_form, template_form=template_form)


def _sent(request: HttpRequest, lead: Lead, message: Message) -> HttpResponse:
    lead = lead_or_404(request.user, lead.pk)
    if request.htmx:
        context = {**_thread_context(request, lead), **_reply_context(request, lead), "reply_box_oob": True}
        return render(request, "messaging/_conversation.html", context)
    queued = message.status == Message.Status.QUEUED
    messages.success(request, "Message queued; it will be retried." if queued else "Message sent.")
    return redirect(reverse("leads:detail", args=[lead.pk]) + "#conversation")
