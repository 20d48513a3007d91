from django.contrib import admin

from messaging.models import Message


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["lead", "direction", "type", "status", "created_at"]
    list_filter = ["direction", "type", "status"]
    list_select_related = ["lead"]
    search_fields = ["lead__name", "lead__phone", "wamid", "body"]
    autocomplete_fields = ["lead", "account", "sent_by"]
    readonly_fields = ["id", "wamid", "created_at", "sent_at", "delivered_at", "read_at", "failed_at"]
