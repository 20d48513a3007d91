"""Django admin of HeyDoc's scheduled messages: read-only rows (they are created through
the API, which validates and schedules them), filters, search, and a cancel action
that goes through the service."""

from django.contrib import admin, messages
from django.db.models import CharField
from django.db.models.functions import Cast

from campaigns.models import ScheduledMessage
from campaigns.services.scheduled import scheduled_messages_cancel, scheduled_messages_delete


@admin.register(ScheduledMessage)
class ScheduledMessageAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "scheduled_time",
        "status",
        "recurrence",
        "account",
        "created_by",
        "recipient_count",
        "queued",
        "skipped_opted_out",
        "skipped_window_closed",
    ]
    list_filter = ["status", "recurrence"]
    list_select_related = ["account", "created_by"]
    search_fields = ["message", "template_name", "created_by__email", "account__name"]
    date_hierarchy = "scheduled_time"
    ordering = ["-scheduled_time", "-id"]
    actions = ["cancel"]
    readonly_fields = [
        "account",
        "message",
        "template_name",
        "template_language",
        "template_params",
        "recipients",
        "scheduled_time",
        "series_start",
        "recurrence",
        "status",
        "previous",
        "created_by",
        "queued",
        "skipped_opted_out",
        "skipped_window_closed",
        "skipped_invalid",
        "error",
        "created_at",
        "updated_at",
        "sent_at",
    ]

    def has_add_permission(self, request) -> bool:
        return False  # through the API: it validates the phones and schedules the send

    def delete_model(self, request, obj):
        scheduled_messages_delete(scheduled_messages=self.model.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        scheduled_messages_delete(scheduled_messages=queryset)

    @admin.display(description="recipients")
    def recipient_count(self, obj: ScheduledMessage) -> int:
        return len(obj.recipients or [])

    def get_search_results(self, request, queryset, search_term):
        """Also finds a phone among the recipients (digits with the country code)."""
        filtered = queryset  # the list filters already applied
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        digits = "".join(ch for ch in search_term if ch.isdigit())
        if len(digits) >= 4:
            matching = (
                self.model.objects.annotate(recipients_text=Cast("recipients", CharField()))
                .filter(recipients_text__contains=digits)
                .values("pk")
            )
            queryset |= filtered.filter(pk__in=matching)
        return queryset, may_have_duplicates

    @admin.action(description="Cancel the selected pending scheduled messages")
    def cancel(self, request, queryset):
        cancelled = scheduled_messages_cancel(scheduled_messages=queryset)
        self.message_user(request, f"{cancelled} scheduled message(s) cancelled.", messages.SUCCESS)
