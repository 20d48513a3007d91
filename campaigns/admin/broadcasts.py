"""Broadcasts in the Django admin: list, filters, search, live counts read-only, and a
"Cancel" action through the service (the same rules as the API's cancel). Broadcasts
are created through the API or the dashboard, where their audience and content are
checked, so the admin doesn't add or edit them beyond the name."""

from django.contrib import admin, messages

from campaigns.models import Broadcast
from campaigns.selectors.broadcasts import broadcast_totals
from campaigns.services.broadcasts import BroadcastStateError, broadcast_cancel


@admin.register(Broadcast)
class BroadcastAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "account",
        "status",
        "recipients",
        "created_by",
        "scheduled_at",
        "started_at",
        "finished_at",
    ]
    list_filter = ["status", "created_at", "scheduled_at"]
    list_select_related = ["account", "created_by"]
    search_fields = ["name", "account__name", "created_by__email", "template_name"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    actions = ["cancel_broadcasts"]
    fields = [
        "id",
        "account",
        "name",
        "status",
        "error",
        "text",
        "template_name",
        "template_language",
        "template_params",
        "audience",
        "scheduled_at",
        "created_by",
        "recipients",
        "message_totals",
        "skipped_opted_out",
        "skipped_invalid",
        "skipped_window_closed",
        "cancelled_unsent",
        "created_at",
        "started_at",
        "finished_at",
    ]
    readonly_fields = [name for name in fields if name != "name"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="Messages by status")
    def message_totals(self, broadcast: Broadcast) -> str:
        if broadcast.pk is None:
            return "—"
        totals = broadcast_totals(broadcast_ids=[broadcast.pk])[broadcast.pk]
        return ", ".join(f"{key.replace('_', ' ')}: {value}" for key, value in totals.items())

    @admin.action(description="Cancel the selected broadcasts (queued messages are dropped)")
    def cancel_broadcasts(self, request, queryset) -> None:
        cancelled, refused = 0, []
        for broadcast in queryset:
            try:
                broadcast_cancel(broadcast=broadcast)
            except BroadcastStateError:
                refused.append(broadcast.name)
            else:
                cancelled += 1
        if cancelled:
            self.message_user(request, f"{cancelled} broadcast(s) cancelled.", messages.SUCCESS)
        if refused:
            self.message_user(request, f"Not cancelled (already finished): {', '.join(refused)}.", messages.WARNING)
