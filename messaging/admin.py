"""Django admin of WhatsApp connections, templates, messages and webhook events.

Secrets never reach a page: a connection's access token and app secret (encrypted) and
its verify-token digest are not loaded, not in any form, list or read-only field.
Connections are added through the dashboard or the API, which check the credentials
with Meta; here the staff change only the throughput cap and the coexistence settings
(through messaging.services.coexistence_update, which caps a coexistence number at 20
messages a second), and a delete disconnects through the service. Templates, messages
and webhook events are history: read-only, with a "Process again" action on webhook
events that runs the sweeper's service."""

import json

from django.contrib import admin, messages
from django.utils.html import format_html

from messaging import services
from messaging.models import Message, Template, WebhookEvent, WhatsAppConnection
from messaging.webhooks import webhook_event_process

SECRET_FIELDS = ("access_token", "app_secret", "verify_token_hash")
SECRETS_NOTE = (
    "Stored encrypted and never shown. To change them, connect the number again from the "
    "dashboard's WhatsApp settings (or POST /api/whatsapp/connect), which checks them with Meta."
)


def without_history_permission(deleted_objects):
    """For a model admin's get_deleted_objects: messages and templates are read-only
    history in the admin, which must not stop deleting their lead or account (they go
    with it, as through the services)."""
    objects, model_count, perms_needed, protected = deleted_objects
    for model in (Message, Template):
        perms_needed.discard(str(model._meta.verbose_name))
    return objects, model_count, perms_needed, protected


def pretty_json(value) -> str:
    """A JSON text or value indented in a <pre>; any other text as it is."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return format_html("<pre>{}</pre>", value)
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


@admin.register(WhatsAppConnection)
class WhatsAppConnectionAdmin(admin.ModelAdmin):
    list_display = [
        "account",
        "display_phone_number",
        "phone_number_id",
        "status",
        "throughput_cap",
        "coexistence_enabled",
        "connected_at",
    ]
    list_filter = ["status", "coexistence_enabled", "record_app_echoes", "sync_app_contacts", "connected_at"]
    list_select_related = ["account"]
    search_fields = ["account__name", "display_phone_number", "phone_number_id", "waba_id", "verified_name"]
    ordering = ["-connected_at"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "account",
                    "phone_number_id",
                    "waba_id",
                    "display_phone_number",
                    "verified_name",
                    "credentials",
                ]
            },
        ),
        ("Health", {"fields": ["status", "status_detail", "templates_synced_at", "connected_at", "updated_at"]}),
        # The only fields the admin changes.
        ("Sending", {"fields": ["throughput_cap", "coexistence_enabled", "record_app_echoes", "sync_app_contacts"]}),
    ]
    readonly_fields = [name for _title, options in fieldsets[:2] for name in options["fields"]]

    def get_queryset(self, request):
        # The secrets are not even loaded (nor decrypted); a save writes the loaded fields only.
        return super().get_queryset(request).defer(*SECRET_FIELDS)

    def has_add_permission(self, request) -> bool:
        # Connecting checks the credentials with Meta's Graph API: the dashboard's WhatsApp
        # settings page or POST /api/whatsapp/connect, never a bare form here.
        return False

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            "subtitle": "Numbers are connected from the dashboard's WhatsApp settings (they are checked with Meta).",
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)

    @admin.display(description="access token, app secret, verify token")
    def credentials(self, connection: WhatsAppConnection) -> str:
        return SECRETS_NOTE

    def save_model(self, request, obj, form, change):
        wanted = obj.throughput_cap
        services.coexistence_update(
            connection=obj,
            enabled=obj.coexistence_enabled,
            record_app_echoes=obj.record_app_echoes,
            sync_app_contacts=obj.sync_app_contacts,
        )
        if obj.throughput_cap != wanted:
            self.message_user(
                request,
                f"The throughput cap is {obj.throughput_cap} messages a second: Meta caps coexistence numbers.",
                messages.WARNING,
            )

    def delete_model(self, request, obj):
        services.whatsapp_disconnect(account=obj.account)

    def delete_queryset(self, request, queryset):
        for connection in queryset.select_related("account"):
            services.whatsapp_disconnect(account=connection.account)


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    """Read-only: templates come from Meta (synced) or the sandbox."""

    list_display = ["name", "language", "category", "status", "account", "is_sandbox", "synced_at"]
    list_filter = ["status", "category", "language", "is_sandbox"]
    list_select_related = ["account"]
    search_fields = ["name"]
    fields = ["account", "name", "language", "category", "status", "meta_id", "is_sandbox", "body", "synced_at"]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="components")
    def body(self, template: Template) -> str:
        return pretty_json(template.components)


class ProcessedFilter(admin.SimpleListFilter):
    title = "processed"
    parameter_name = "processed"

    def lookups(self, request, model_admin):
        return [("yes", "Processed"), ("no", "Unprocessed")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(processed_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(processed_at__isnull=True)
        return queryset


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    """Meta's deliveries as received: read-only audit, pruned after 30 days."""

    list_display = ["id", "received_at", "phone_numbers", "is_processed", "processed_at", "short_error"]
    list_filter = [ProcessedFilter, "received_at"]
    search_fields = ["payload", "error"]
    date_hierarchy = "received_at"
    fields = ["id", "received_at", "phone_number_ids", "processed_at", "error", "payload_pretty"]
    readonly_fields = fields
    actions = ["process_again"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="phone number ids")
    def phone_numbers(self, event: WebhookEvent) -> str:
        return ", ".join(str(number) for number in event.phone_number_ids or []) or "-"

    @admin.display(description="processed", boolean=True, ordering="processed_at")
    def is_processed(self, event: WebhookEvent) -> bool:
        return event.processed_at is not None

    @admin.display(description="error")
    def short_error(self, event: WebhookEvent) -> str:
        return (event.error[:80] + "...") if len(event.error) > 80 else event.error

    @admin.display(description="payload")
    def payload_pretty(self, event: WebhookEvent) -> str:
        return pretty_json(event.payload)

    @admin.action(description="Process again (the unprocessed ones, as the sweeper does)")
    def process_again(self, request, queryset):
        processed, skipped, failed = 0, 0, []
        for event_id in queryset.order_by("received_at").values_list("pk", flat=True):
            try:
                ran = webhook_event_process(event_id=event_id)
            except Exception as exc:  # recorded on the event, as the sweeper does
                failed.append(str(event_id))
                WebhookEvent.objects.filter(pk=event_id).update(error=f"{type(exc).__name__}: {exc}"[:2000])
            else:
                processed += ran
                skipped += not ran
        if processed:
            self.message_user(request, f"{processed} webhook event(s) processed.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"{skipped} event(s) skipped: already processed (or being processed).", messages.INFO
            )
        if failed:
            self.message_user(
                request, f"Processing failed again for event(s) {', '.join(failed)}: see their error.", messages.ERROR
            )


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """The conversation history: read-only (sent through the services, updated by Meta's
    statuses); deleted only with its lead or account."""

    list_display = ["lead", "account", "direction", "type", "status", "source", "provider", "created_at"]
    list_filter = ["direction", "type", "status", "source", "provider", "created_at"]
    list_select_related = ["lead", "account"]
    search_fields = ["lead__name", "lead__phone", "wamid", "body", "template_name"]
    show_full_result_count = False  # a large table: no second COUNT(*) for the search
    fields = [
        "id",
        "account",
        "lead",
        "direction",
        "type",
        "status",
        "source",
        "provider",
        "body",
        "template_name",
        "template_language",
        "template_params",
        "media",
        "wamid",
        "error_code",
        "error_title",
        "is_read",
        "sent_by",
        "broadcast",
        "enrollment",
        "drip_step",
        "scheduled_message",
        "attempts",
        "created_at",
        "sent_at",
        "delivered_at",
        "read_at",
        "failed_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
