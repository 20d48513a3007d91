"""Admin of drips: a drip with its steps inline, saved through the drip service (the
same checks as the API: 1 to 50 steps, a text or an approved template each, a valid
send window) so the steps are always stored in order; enrollments with filters,
search and a "stop" action through the service."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.forms.models import BaseInlineFormSet

from campaigns.models import Drip, DripStep, Enrollment
from campaigns.services import drips as services
from heroshhi.errors import ValidationFailed


class DripAdminForm(forms.ModelForm):
    class Meta:
        model = Drip
        fields = [
            "account",
            "name",
            "description",
            "is_active",
            "stop_on_reply",
            "stop_on_conversion",
            "send_window_start",
            "send_window_end",
        ]

    def clean(self):
        cleaned = super().clean()
        account = cleaned.get("account") or getattr(self.instance, "account", None)
        if account is None or self.errors:
            return cleaned
        fields = (*services.DRIP_FIELDS, *services.WINDOW_FIELDS)
        try:
            # The drip's own fields; the steps are checked by the inline formset.
            services.drip_clean(account=account, data={name: cleaned.get(name) for name in fields}, drip=self.instance)
        except ValidationFailed as exc:
            for name, field_messages in (exc.errors or {}).items():
                self.add_error(name if name in self.fields else None, field_messages)
        return cleaned


class DripStepForm(forms.ModelForm):
    # Not the model's position: the service numbers the steps 0, 1, 2… in this order,
    # so two steps can swap places without tripping the (drip, position) constraint.
    order = forms.IntegerField(required=False, min_value=0, help_text="Steps run in this order.")

    class Meta:
        model = DripStep
        fields = ["delay_amount", "delay_unit", "text", "template_name", "template_language", "template_params"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["order"].initial = self.instance.position


class DripStepFormSet(BaseInlineFormSet):
    def clean(self):
        super().clean()
        self.steps = []
        if any(self.errors):
            return
        rows = [
            (form.cleaned_data.get("order"), index, form)
            for index, form in enumerate(self.forms)
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        rows.sort(key=lambda row: (row[0] is None, row[0] or 0, row[1]))
        self.steps = [
            {name: form.cleaned_data.get(name) for name in services.STEP_FIELDS} for _order, _index, form in rows
        ]
        account = getattr(self.instance, "account", None) if self.instance.account_id else None
        if account is None:  # the drip's form is invalid and says so
            return
        try:
            services.drip_clean(account=account, data={"steps": self.steps}, drip=self.instance)
        except ValidationFailed as exc:
            general = []
            for key, field_messages in (exc.errors or {}).items():
                parts = key.split(".")
                if len(parts) == 3:
                    form = rows[int(parts[1])][2]
                    form.add_error(parts[2] if parts[2] in form.fields else None, field_messages)
                elif len(parts) == 2:
                    rows[int(parts[1])][2].add_error(None, field_messages)
                else:
                    general.extend(field_messages)
            if general:
                raise ValidationError(general) from None


class DripStepInline(admin.TabularInline):
    model = DripStep
    form = DripStepForm
    formset = DripStepFormSet
    fields = ["order", "delay_amount", "delay_unit", "text", "template_name", "template_language", "template_params"]
    extra = 1
    ordering = ["position"]


@admin.register(Drip)
class DripAdmin(admin.ModelAdmin):
    form = DripAdminForm
    inlines = [DripStepInline]
    list_display = ["name", "account", "is_active", "stop_on_reply", "stop_on_conversion", "active_enrollments"]
    list_filter = ["is_active", "stop_on_reply", "stop_on_conversion"]
    list_select_related = ["account"]
    search_fields = ["name", "account__name"]
    autocomplete_fields = ["account"]
    readonly_fields = ["id", "created_by", "created_at", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        # A drip's enrollments are its account's leads: it never moves to another account.
        return [*self.readonly_fields, "account"] if obj is not None else self.readonly_fields

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(active_count=Count("enrollments", filter=Q(enrollments__status=Enrollment.Status.ACTIVE)))
        )

    @admin.display(description="active enrollments", ordering="active_count")
    def active_enrollments(self, drip) -> int:
        return drip.active_count

    def save_model(self, request, obj, form, change):
        """Saved with its steps in save_related, through the service, in one go."""

    def save_related(self, request, form, formsets, change):
        steps = next(formset for formset in formsets if formset.model is DripStep).steps
        drip = form.instance
        data = {name: form.cleaned_data.get(name) for name in (*services.DRIP_FIELDS, *services.WINDOW_FIELDS)}
        data["steps"] = steps
        # The platform's staff act for the workspace; created_by names one of its users only.
        user = request.user if request.user.account_id == drip.account_id else None
        if change:
            services.drip_update(drip=drip, user=user, data=data)
            return
        created = services.drip_create(account=drip.account, user=user, data=data)
        for model_field in Drip._meta.concrete_fields:
            setattr(drip, model_field.attname, getattr(created, model_field.attname))
        drip._state.adding, drip._state.db = False, created._state.db

    def construct_change_message(self, request, form, formsets, add=False):
        change_message = super().construct_change_message(request, form, [], add)
        if not add:
            change_message.append({"changed": {"fields": ["steps"]}})
        return change_message


@admin.register(Enrollment)
class EnrollmentAdmin(admin.ModelAdmin):
    list_display = [
        "lead",
        "drip",
        "status",
        "stop_reason",
        "next_step",
        "next_due_at",
        "steps_sent",
        "steps_skipped",
        "enrolled_at",
    ]
    list_filter = ["status", "stop_reason", "drip"]
    list_select_related = ["lead", "drip"]
    search_fields = ["lead__name", "lead__phone", "lead__email", "drip__name"]
    date_hierarchy = "enrolled_at"
    actions = ["stop_enrollments"]
    fields = [
        "account",
        "drip",
        "lead",
        "status",
        "stop_reason",
        "next_step",
        "next_due_at",
        "steps_sent",
        "steps_skipped",
        "last_error",
        "enrolled_by",
        "enrolled_at",
        "finished_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False  # leads are enrolled through the drip service (API, dashboard)

    @admin.action(description="Stop the selected enrollments")
    def stop_enrollments(self, request, queryset):
        stopped = services.enrollments_stop(enrollment_ids=queryset.values_list("pk", flat=True))
        self.message_user(request, f"{stopped} enrollment(s) stopped.", messages.SUCCESS)
