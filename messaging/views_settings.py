"""The WhatsApp settings page of the dashboard (admins only; agents get a 404, and the
navigation hides it from them): the connection's status or the sandbox, connecting a
Cloud API number, disconnecting, coexistence, the templates with a refresh from Meta,
and the webhook URL to give Meta.

Views call the same selectors and services as /api/whatsapp/* and
/api/messages/templates (messaging/api/views.py). Secrets are never rendered back."""

import contextlib

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from accounts.views import staff_page
from heroshhi.errors import DomainError, ValidationFailed
from messaging import selectors, services
from messaging.forms_settings import CoexistenceForm, ConnectForm, add_connect_errors
from messaging.providers import ProviderError


def _admin_or_404(request: HttpRequest) -> None:
    if not request.user.is_account_admin:
        raise Http404("Page not found.")


def _page(request: HttpRequest, *, connect_form: ConnectForm | None = None, status: int = 200) -> HttpResponse:
    account = request.user.account
    if selectors.templates_need_sync(account=account):
        # First use, as GET /api/messages/templates: on failure show what is stored.
        with contextlib.suppress(ProviderError):
            services.templates_sync(account=account)
    state = selectors.whatsapp_status(account=account)
    connection = selectors.connection_for(account=account)
    coexistence_form = None
    if connection is not None:
        coexistence = selectors.coexistence_of(connection)
        coexistence_form = CoexistenceForm(
            initial={
                "enabled": coexistence.enabled,
                "record_app_echoes": coexistence.record_app_echoes,
                "sync_app_contacts": coexistence.sync_app_contacts,
            }
        )
    context = {
        "state": state,
        "connection": connection,
        "connect_form": connect_form or ConnectForm(),
        "coexistence_form": coexistence_form,
        "templates": list(selectors.template_list(account=account)),
        "webhook_url": request.build_absolute_uri(reverse("api-webhook-whatsapp")),
    }
    return render(request, "messaging/settings_whatsapp.html", context, status=status)


@staff_page
@require_http_methods(["GET"])
def whatsapp_settings_view(request: HttpRequest) -> HttpResponse:
    _admin_or_404(request)
    return _page(request)


@staff_page
@require_POST
def whatsapp_connect_view(request: HttpRequest) -> HttpResponse:
    _admin_or_404(request)
    form = ConnectForm(request.POST)
    if form.is_valid():
        try:
            services.whatsapp_connect(account=request.user.account, **form.service_kwargs())
        except ValidationFailed as exc:
            add_connect_errors(form, exc)
        else:
            messages.success(request, "WhatsApp connected; templates loaded from Meta.")
            return redirect("whatsapp-settings")
    # A fresh form: the secrets typed are not sent back (render_value=False).
    return _page(request, connect_form=form, status=400)


@staff_page
@require_http_methods(["GET", "POST"])
def whatsapp_disconnect_view(request: HttpRequest) -> HttpResponse:
    _admin_or_404(request)
    account = request.user.account
    if request.method == "POST":
        if services.whatsapp_disconnect(account=account):
            messages.success(request, "WhatsApp disconnected; messages now go to the sandbox.")
        else:
            messages.info(request, "No connection to remove.")
        return redirect("whatsapp-settings")
    connection = selectors.connection_for(account=account)
    if connection is None:
        messages.info(request, "No connection to remove.")
        return redirect("whatsapp-settings")
    return render(request, "messaging/settings_disconnect_confirm.html", {"connection": connection})


@staff_page
@require_POST
def whatsapp_coexistence_view(request: HttpRequest) -> HttpResponse:
    _admin_or_404(request)
    try:
        connection = selectors.connection_get(account=request.user.account)
    except DomainError as exc:  # WHATSAPP_NOT_CONNECTED
        messages.error(request, exc.message)
        return redirect("whatsapp-settings")
    form = CoexistenceForm(request.POST)
    form.is_valid()  # three check boxes: always valid
    connection = services.coexistence_update(
        connection=connection,
        enabled=form.cleaned_data["enabled"],
        record_app_echoes=form.cleaned_data["record_app_echoes"],
        sync_app_contacts=form.cleaned_data["sync_app_contacts"],
    )
    messages.success(
        request, f"Coexistence settings saved. Throughput cap: {connection.throughput_cap} messages a second."
    )
    return redirect("whatsapp-settings")


@staff_page
@require_POST
def whatsapp_templates_refresh_view(request: HttpRequest) -> HttpResponse:
    _admin_or_404(request)
    try:
        count = services.templates_sync(account=request.user.account)
    except ProviderError as exc:
        messages.error(request, f"WhatsApp refused the template sync ({exc.code}: {exc.title}).")
    else:
        messages.success(request, f"Templates refreshed: {count} template{'s' if count != 1 else ''}.")
    return redirect(f"{reverse('whatsapp-settings')}#templates")
