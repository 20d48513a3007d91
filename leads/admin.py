from django.contrib import admin

from leads.models import Engagement, Lead, Tag


class EngagementInline(admin.TabularInline):
    model = Engagement
    extra = 0
    fields = ["type", "notes", "user", "at"]
    autocomplete_fields = ["user"]


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    list_display = ["name", "phone", "account", "status", "segment", "assigned_to", "is_opted_out", "created_at"]
    list_filter = ["status", "segment", "is_opted_out"]
    list_select_related = ["account", "assigned_to"]
    search_fields = ["name", "phone", "email"]
    autocomplete_fields = ["account", "assigned_to", "tags"]
    readonly_fields = ["id", "created_at", "updated_at", "last_inbound_at", "last_outbound_at", "last_message_at"]
    inlines = [EngagementInline]


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ["name", "color", "account", "created_at"]
    list_select_related = ["account"]
    search_fields = ["name", "account__name"]
    autocomplete_fields = ["account"]


@admin.register(Engagement)
class EngagementAdmin(admin.ModelAdmin):
    list_display = ["lead", "type", "user", "at"]
    list_filter = ["type"]
    list_select_related = ["lead", "user"]
    search_fields = ["lead__name", "lead__phone", "notes"]
    autocomplete_fields = ["lead", "user"]
