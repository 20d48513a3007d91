"""Forms of the broadcast pages. They only shape input into what
campaigns.services.broadcasts expects (text or template, lead ids or a filter, when);
the rules (variables, approved templates, audiences, opt-outs, times) are the
service's, whose ValidationFailed errors are put back on these forms' fields."""

import uuid

from django import forms
from django.utils import timezone

from campaigns.forms import template_choices
from campaigns.selectors.broadcasts import MAX_LEAD_IDS
from campaigns.services.broadcasts import MAX_TEXT
from heroshhi.errors import DomainError, ValidationFailed
from leads.forms import people_choices
from leads.models import Lead

ACTIONS = ("preview", "send", "schedule", "draft")
AUDIENCE_FILTER = "filter"
AUDIENCE_SELECTED = "selected"
FILTER_FIELDS = ("status", "segment", "tags", "source", "assignedTo")


def parse_lead_ids(values: list[str]) -> tuple[list[str], list[str]]:
    """Lead ids from ``?ids=a,b`` / repeated ``ids``: (valid ids in order, invalid values)."""
    valid: list[str] = []
    invalid: list[str] = []
    for value in values[: MAX_LEAD_IDS + 1]:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                pk = str(uuid.UUID(part))
            except ValueError:
                invalid.append(part[:40])
                continue
            if pk not in valid:
                valid.append(pk)
    return valid, invalid


class AudienceFilterForm(forms.Form):
    """The audience as a filter: the lead list's criteria (any of, within each)."""

    status = forms.MultipleChoiceField(
        label="Status", required=False, choices=Lead.Status.choices, widget=forms.CheckboxSelectMultiple
    )
    segment = forms.MultipleChoiceField(
        label="Segment", required=False, choices=Lead.Segment.choices, widget=forms.CheckboxSelectMultiple
    )
    tags = forms.MultipleChoiceField(
        label="Tags",
        required=False,
        help_text="Leads with any of them.",
        widget=forms.SelectMultiple(attrs={"size": 4}),
    )
    source = forms.CharField(label="Source", max_length=100, required=False)
    assignedTo = forms.ChoiceField(label="Assigned to", required=False)

    def __init__(self, *args, user, team, tags, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tags"].choices = [(str(tag.pk), tag.name) for tag in tags]
        self.fields["assignedTo"].choices = [
            ("", "Anyone"),
            ("me", "Me"),
            ("unassigned", "Unassigned"),
            *(people_choices(user=user, team=team) if user.is_account_admin else []),
        ]

    def filters(self) -> dict:
        """The valid criteria as the service's ``filters`` mapping ({} is every lead)."""
        data = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        result: dict = {}
        for key in ("status", "segment"):
            if data.get(key):
                result[key] = list(data[key])
        if data.get("tags"):
            result["tags"] = [int(pk) for pk in data["tags"]]
        if (data.get("source") or "").strip():
            result["source"] = data["source"].strip()
        if data.get("assignedTo"):
            result["assignedTo"] = data["assignedTo"]
        return result


class BroadcastForm(forms.Form):
    name = forms.CharField(
        max_length=200, required=False, help_text="Optional; default: “Broadcast” and the date and time."
    )
    message = forms.CharField(
        required=False,
        max_length=MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Per-lead variables: {{name}}, {{first_name}}, {{phone}}, {{email}}, {{source}}, {{status}}, "
        "{{segment}}, {{inquiry}}, {{assigned_to}}. A text reaches only leads who wrote in the last 24 hours.",
    )
    template = forms.ChoiceField(
        required=False, choices=(), label="Or an approved template", help_text="Reaches every lead not opted out."
    )
    template_params = forms.CharField(
        required=False,
        label="Template parameters",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One per line, in order ({{1}}, {{2}}, …); variables such as {{first_name}} work here too.",
    )
    audience = forms.ChoiceField(
        label="Send to",
        required=False,
        widget=forms.RadioSelect,
        choices=[(AUDIENCE_FILTER, "Leads matching a filter")],
    )
    scheduled_at = forms.DateTimeField(
        label="Send at",
        required=False,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="For “Schedule”, in the account's time zone.",
    )

    def __init__(self, *args, templates=(), selected: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["template"].choices = template_choices(templates)
        self.selected = selected
        if selected:
            label = f"The {selected} selected lead{'s' if selected != 1 else ''}"
            self.fields["audience"].choices = [(AUDIENCE_SELECTED, label), (AUDIENCE_FILTER, "Leads matching a filter")]
            self.fields["audience"].initial = AUDIENCE_SELECTED
        else:
            self.fields["audience"].initial = AUDIENCE_FILTER

    def uses_selection(self) -> bool:
        data = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        return bool(self.selected) and (data.get("audience") or AUDIENCE_SELECTED) == AUDIENCE_SELECTED

    def template_ref(self):
        from messaging.services import TemplateRef

        name, _, language = (self.cleaned_data.get("template") or "").partition("|")
        if not name:
            return None
        params = [line.strip() for line in (self.cleaned_data.get("template_params") or "").splitlines()]
        return TemplateRef(name=name, language=language, params=[param for param in params if param])

    def check_action(self, action: str) -> None:
        """What the page asks before calling the service: a time for “Schedule”."""
        when = self.cleaned_data.get("scheduled_at")
        if action == "schedule":
            if when is None:
                self.add_error("scheduled_at", "Choose when to send it, or use “Send now”.")
            elif when <= timezone.now():
                self.add_error("scheduled_at", "This time has passed; choose a later one, or use “Send now”.")


# Service error keys → (form, field) on the page; "filter" may nest the criterion.
_CONTENT_KEYS = {"message": "message", "template": "template", "scheduledAt": "scheduled_at", "name": "name"}


def add_broadcast_errors(form: BroadcastForm, audience_form: AudienceFilterForm, exc: DomainError) -> None:
    """The service's errors on the page's fields: message, template, scheduledAt on
    the broadcast form; filter (and its criteria) on the filter form; leadIds on the
    audience choice."""
    if not isinstance(exc, ValidationFailed):
        # E.g. TEMPLATE_NOT_APPROVED: the template no longer is.
        field = "template" if form.cleaned_data.get("template") else None
        form.add_error(field, exc.message)
        return
    for key, messages in (exc.errors or {None: [exc.message]}).items():
        if key == "filter" and isinstance(messages, dict):
            for nested, nested_messages in messages.items():
                for message in _as_list(nested_messages):
                    target = nested if nested in audience_form.fields else None
                    audience_form.add_error(target, str(message))
            continue
        for message in _as_list(messages):
            if key == "filter":
                audience_form.add_error(None, str(message))
            elif key == "leadIds":
                form.add_error("audience", str(message))
            else:
                field = _CONTENT_KEYS.get(key or "")
                form.add_error(field, str(message) if field else f"{key}: {message}" if key else str(message))


def _as_list(value) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]
