"""Django admin of leads, tags, engagements and CSV import jobs.

Opting out, opting back in and assigning go through leads.services (the same rules as
the API and the dashboard), as actions on the lead list; the "Assign to..." action asks
for the assignee on an intermediate page listing the users of the leads' account. The
platform's staff act as an admin of that account. Import jobs are read-only: the
uploaded file itself is never loaded nor shown, only the progress and the report."""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.template.response import TemplateResponse
from django.utils.html import format_html

from accounts.models import User
from heroshhi.errors import DomainError, ValidationFailed
from leads import services
from leads.models import Engagement, Lead, LeadImportJob, Tag
from leads.phones import phone_or_error
from messaging.admin import without_history_permission

STAFF_OPT_OUT_REASON = "Opted out by staff in the admin"


def acting_admin(request, account_id) -> User:
    """Who the services see when the platform's staff act on an account's leads: the
    staff user when they are an admin of that account, otherwise an unsaved admin of it
    (the services check the account and the role; nothing stores this user)."""
    user = request.user
    if user.account_id == account_id and user.is_account_admin:
        return user
    return User(account_id=account_id, role=User.Role.ADMIN, email=user.email, name=user.get_username())


class EngagementInline(admin.TabularInline):
    model = Engagement
    extra = 0
    fields = ["type", "notes", "user", "at"]
    autocomplete_fields = ["user"]


class LeadAdminForm(forms.ModelForm):
    class Meta:
        model = Lead
        fields = [
            "account",
            "name",
            "phone",
            "email",
            "source",
            "inquiry",
            "segment",
            "status",
            "assigned_to",
            "tags",
            "notes",
        ]

    def clean(self):
        cleaned = super().clean()
        account = cleaned.get("account") or (self.instance.account if self.instance.account_id else None)
        if account is None:
            return cleaned
        if cleaned.get("phone"):
            # E.164, as the services store it (the unique check then sees the same number).
            try:
                cleaned["phone"] = phone_or_error(cleaned["phone"], account.default_country)
            except ValidationFailed as exc:
                self.add_error("phone", exc.errors["phone"])
        assignee = cleaned.get("assigned_to")
        if assignee is not None and assignee.account_id != account.pk:
            self.add_error("assigned_to", "Choose a user of the lead's account.")
        foreign_tags = [tag.name for tag in cleaned.get("tags") or [] if tag.account_id != account.pk]
        if foreign_tags:
            self.add_error("tags", f"Not tags of the lead's account: {', '.join(foreign_tags)}.")
        return cleaned


class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(
        queryset=User.objects.none(),
        required=False,
        empty_label="Nobody (unassign)",
        label="Assign to",
        help_text="Active users of the leads' account.",
    )

    def __init__(self, *args, account_id, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = User.objects.filter(account_id=account_id, is_active=True).order_by(
            "name", "email"
        )
        self.fields["assignee"].label_from_instance = lambda user: (
            f"{user.name} <{user.email}> ({user.get_role_display()})" if user.name else user.email
        )


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    form = LeadAdminForm
    list_display = ["name", "phone", "account", "status", "segment", "assigned_to", "is_opted_out", "created_at"]
    list_filter = ["status", "segment", "is_opted_out", "account", "created_at"]
    list_select_related = ["account", "assigned_to"]
    search_fields = ["name", "phone", "email"]
    autocomplete_fields = ["account", "assigned_to", "tags"]
    # Opting out and in are actions (through the service), not a checkbox.
    readonly_fields = [
        "id",
        "is_opted_out",
        "opted_out_at",
        "opt_out_reason",
        "created_at",
        "updated_at",
        "last_inbound_at",
        "last_outbound_at",
        "last_message_at",
    ]
    inlines = [EngagementInline]
    actions = ["opt_out", "opt_in", "assign_to"]

    def get_deleted_objects(self, objs, request):
        return without_history_permission(super().get_deleted_objects(objs, request))

    @admin.action(description="Opt out the selected leads (no more WhatsApp messages)")
    def opt_out(self, request, queryset):
        leads = list(queryset.select_related(None).only("pk"))
        changed = sum(services.lead_opt_out(lead=lead, reason=STAFF_OPT_OUT_REASON) for lead in leads)
        self.message_user(request, f"{changed} lead(s) opted out.", messages.SUCCESS)
        if changed < len(leads):
            self.message_user(request, f"{len(leads) - changed} lead(s) were already opted out.", messages.INFO)

    @admin.action(description="Opt the selected leads back in")
    def opt_in(self, request, queryset):
        leads = list(queryset.select_related(None).only("pk"))
        changed = sum(services.lead_opt_in(lead=lead) for lead in leads)
        self.message_user(request, f"{changed} lead(s) opted back in.", messages.SUCCESS)
        if changed < len(leads):
            self.message_user(request, f"{len(leads) - changed} lead(s) were not opted out.", messages.INFO)

    @admin.action(description="Assign to...")
    def assign_to(self, request, queryset):
        account_ids = list(queryset.order_by().values_list("account_id", flat=True).distinct()[:2])
        if len(account_ids) != 1:
            self.message_user(
                request,
                "Assign leads of one account at a time: the selection holds leads of several accounts "
                "(filter the list by account first).",
                messages.ERROR,
            )
            return None
        account_id = account_ids[0]
        ids = [str(pk) for pk in queryset.values_list("pk", flat=True)]
        form = AssignForm(request.POST if "apply" in request.POST else None, account_id=account_id)
        if form.is_bound and form.is_valid():
            assignee = form.cleaned_data["assignee"]
            try:
                count = services.lead_bulk_assign(
                    user=acting_admin(request, account_id),
                    ids=ids,
                    assignee_id=str(assignee.pk) if assignee else None,
                )
            except DomainError as exc:  # e.g. ValidationFailed: a lead or the assignee is gone
                self.message_user(request, f"Nothing was assigned: {exc}", messages.ERROR)
            else:
                target = assignee.email if assignee else "nobody"
                self.message_user(request, f"{count} lead(s) assigned to {target}.", messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Assign leads",
            "subtitle": None,
            "opts": self.model._meta,
            "form": form,
            "leads": queryset.select_related("assigned_to").order_by("name")[:100],
            "lead_count": len(ids),
            "ids": ids,
            "account": queryset.first().account,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/leads/lead/assign.html", context)


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ["name", "color", "account", "created_at"]
    list_filter = ["account"]
    list_select_related = ["account"]
    search_fields = ["name", "account__name"]
    autocomplete_fields = ["account"]


@admin.register(Engagement)
class EngagementAdmin(admin.ModelAdmin):
    list_display = ["lead", "type", "user", "at"]
    list_filter = ["type", "at"]
    list_select_related = ["lead", "user"]
    search_fields = ["lead__name", "lead__phone", "notes"]
    autocomplete_fields = ["lead", "user"]


@admin.register(LeadImportJob)
class LeadImportJobAdmin(admin.ModelAdmin):
    """Read-only: jobs are created by uploading a CSV (API, dashboard) and run by a worker."""

    list_display = [
        "file_name",
        "account",
        "user",
        "status",
        "total_rows",
        "processed_rows",
        "created_count",
        "updated_count",
        "skipped_count",
        "error_count",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "created_at"]
    list_select_related = ["account", "user"]
    search_fields = ["file_name", "account__name", "user__email"]
    date_hierarchy = "created_at"
    # Never the uploaded file (``data``): it holds the leads' personal data and can be large.
    fields = [
        "id",
        "account",
        "user",
        "status",
        "file_name",
        "total_rows",
        "processed_rows",
        "created_count",
        "updated_count",
        "skipped_count",
        "error_count",
        "row_errors",
        "error_message",
        "created_at",
        "started_at",
        "finished_at",
        "heartbeat_at",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer("data")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="row errors")
    def row_errors(self, job: LeadImportJob) -> str:
        if not job.errors:
            return "-"
        return format_html("<pre>{}</pre>", json.dumps(job.errors, indent=2, ensure_ascii=False))
