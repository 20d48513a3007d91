from django.contrib import admin

from leads.models import Lead


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    list_display = ["name", "phone", "account", "status", "segment", "assigned_to", "is_opted_out", "created_at"]
    list_filter = ["status", "segment", "is_opted_out"]
    list_select_related = ["account", "assigned_to"]
    search_fields = ["name", "phone", "email"]
    autocomplete_fields = ["account", "assigned_to"]
    readonly_fields = ["id", "created_at", "updated_at"]
