"""Forms of the lead pages. They check shapes (types, lengths, choices); the rules
(phone format and uniqueness, who may be assigned, tenancy) are leads.services',
whose ValidationFailed errors are put back on the form's fields."""

import uuid

from django import forms

from accounts.models import User
from heroshhi.errors import ValidationFailed
from leads.models import Engagement, Lead
from leads.selectors import LeadFilters

# The service's error keys (the API's camelCase names) → form fields.
SERVICE_FIELD_NAMES = {"assignedTo": "assigned_to", "isOptedOut": "is_opted_out", "optOutReason": "opt_out_reason"}


def add_service_errors(form: forms.Form, exc: ValidationFailed) -> None:
    """Puts a service's ValidationFailed on the form: each error on its field when the
    form has one, otherwise at the top of the form."""
    errors = exc.errors or {None: [exc.message]}
    for key, messages in errors.items():
        field = SERVICE_FIELD_NAMES.get(key, key)
        for message in messages if isinstance(messages, list | tuple) else [messages]:
            form.add_error(field if field in form.fields else None, str(message))


def people_choices(*, user: User, team: list[User]) -> list[tuple[str, str]]:
    """Whom the user may assign leads to: anyone active in the team for an admin; an
    agent only themselves (the service refuses anything else)."""
    people = team if user.is_account_admin else [user]
    return [(str(person.pk), person.name or person.email) for person in people if person.is_active]


def _blank(label: str, choices) -> list[tuple[str, str]]:
    return [("", label), *choices]


SORTS = {
    "-created": ("Newest first", ("-created_at", "-id")),
    "created": ("Oldest first", ("created_at", "id")),
    "name": ("Name, A to Z", ("name", "id")),
    "-name": ("Name, Z to A", ("-name", "-id")),
    "-last_message": ("Latest message", None),  # nulls last: built in the view
}
DEFAULT_SORT = "-created"


class LeadFilterForm(forms.Form):
    """The list's query string: the API's filter names (search, status, segment, source,
    assignedTo, tag, isOptedOut, createdFrom, createdTo) and a sort order."""

    search = forms.CharField(label="Search", max_length=200, required=False)
    status = forms.ChoiceField(label="Status", required=False)
    segment = forms.ChoiceField(label="Segment", required=False)
    source = forms.CharField(label="Source", max_length=100, required=False)
    assignedTo = forms.ChoiceField(label="Assigned to", required=False)
    tag = forms.ChoiceField(label="Tag", required=False)
    isOptedOut = forms.ChoiceField(
        label="Opt-out",
        required=False,
        choices=[("", "Any"), ("false", "Can be messaged"), ("true", "Opted out")],
    )
    createdFrom = forms.DateField(label="Created from", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    createdTo = forms.DateField(label="Created to", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    sort = forms.ChoiceField(
        label="Sort by", required=False, choices=[(key, label) for key, (label, _) in SORTS.items()]
    )

    def __init__(self, data, *, user: User, team: list[User], tags: list, **kwargs):
        super().__init__(data, **kwargs)
        self.fields["search"].widget.attrs.update(type="search", placeholder="Name, phone or email")
        self.fields["status"].choices = _blank("Any status", Lead.Status.choices)
        self.fields["segment"].choices = _blank("Any segment", Lead.Segment.choices)
        self.fields["assignedTo"].choices = [
            ("", "Anyone"),
            ("me", "Me"),
            ("unassigned", "Unassigned"),
            *(people_choices(user=user, team=team) if user.is_account_admin else []),
        ]
        self.fields["tag"].choices = _blank("Any tag", [(str(tag.pk), tag.name) for tag in tags])

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("createdFrom"), cleaned.get("createdTo")
        if start and end and start > end:
            self.add_error("createdTo", "Must not be before “Created from”.")
        return cleaned

    def filters(self) -> LeadFilters:
        """The valid part of the query as the selector's filters: an invalid value is
        shown as an error and left out, the others still apply."""
        data = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        opted_out = {"true": True, "false": False}.get(data.get("isOptedOut") or "")
        return LeadFilters(
            status=data.get("status") or None,
            segment=data.get("segment") or None,
            source=(data.get("source") or "").strip() or None,
            assigned_to=data.get("assignedTo") or None,
            tag=data.get("tag") or None,
            is_opted_out=opted_out,
            created_from=data.get("createdFrom"),
            created_to=data.get("createdTo"),
            search=(data.get("search") or "").strip() or None,
        )

    def sort_key(self) -> str:
        data = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        return data.get("sort") or DEFAULT_SORT

    def is_filtered(self) -> bool:
        data = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        return any(value not in (None, "") for key, value in data.items() if key != "sort")


class LeadForm(forms.Form):
    """Create and edit a lead. Model field names, as leads.services takes them."""

    name = forms.CharField(max_length=200, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    phone = forms.CharField(
        max_length=40,
        help_text="With the country code (e.g. +91 98765 43210), or a national number of the workspace's country.",
        widget=forms.TextInput(attrs={"inputmode": "tel", "autocomplete": "off"}),
    )
    email = forms.EmailField(max_length=254, required=False)
    source = forms.CharField(max_length=100, required=False, help_text="Where the lead came from, e.g. Website Form.")
    segment = forms.ChoiceField(choices=_blank("—", Lead.Segment.choices), required=False)
    status = forms.ChoiceField(choices=Lead.Status.choices, initial=Lead.Status.PENDING)
    assigned_to = forms.ChoiceField(label="Assigned to", required=False)
    tags = forms.CharField(max_length=1000, required=False, help_text="Comma-separated; new names become new tags.")
    inquiry = forms.CharField(max_length=5000, required=False, widget=forms.Textarea(attrs={"rows": 3}))
    notes = forms.CharField(max_length=10000, required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, user: User, team: list[User], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assigned_to"].choices = [("", "Unassigned"), *people_choices(user=user, team=team)]

    def clean_tags(self) -> list[str]:
        names = [name.strip() for name in self.cleaned_data["tags"].split(",")]
        names = [name for name in dict.fromkeys(names) if name]
        too_long = [name for name in names if len(name) > 50]
        if too_long:
            raise forms.ValidationError("A tag name has at most 50 characters.")
        if len(names) > 50:
            raise forms.ValidationError("At most 50 tags.")
        return names

    def service_data(self) -> dict:
        data = dict(self.cleaned_data)
        data["assigned_to"] = data.get("assigned_to") or None
        return data

    @staticmethod
    def initial_for(lead: Lead) -> dict:
        return {
            "name": lead.name,
            "phone": lead.phone,
            "email": lead.email,
            "source": lead.source,
            "segment": lead.segment,
            "status": lead.status,
            "assigned_to": str(lead.assigned_to_id or ""),
            "tags": ", ".join(tag.name for tag in lead.tags.all()),
            "inquiry": lead.inquiry,
            "notes": lead.notes,
        }


BULK_ACTIONS = {
    "assign": "Assign",
    "status": "Set status",
    "segment": "Set segment",
    "tag": "Add tag",
    "opt_out": "Opt out",
    "opt_in": "Opt back in",
    "delete": "Delete",
}


class LeadIdsField(forms.MultipleChoiceField):
    """Checked lead ids: any well-formed id passes here; leads.services checks that
    each one is a lead the user may see (all or nothing)."""

    def valid_value(self, value) -> bool:
        return True

    def clean(self, value):
        ids = list(dict.fromkeys(super().clean(value)))
        if not ids:
            raise forms.ValidationError("Select at least one lead.")
        for raw in ids:
            try:
                uuid.UUID(str(raw))
            except ValueError:
                raise forms.ValidationError("The selection holds something that is not a lead.") from None
        return ids


class BulkActionForm(forms.Form):
    """The list's checkboxes and the action to apply to the checked leads."""

    action = forms.ChoiceField(choices=list(BULK_ACTIONS.items()))
    ids = LeadIdsField(required=False)
    assignee = forms.ChoiceField(label="Assign to", required=False)
    status = forms.ChoiceField(label="Status", choices=_blank("Choose…", Lead.Status.choices), required=False)
    segment = forms.ChoiceField(
        label="Segment", choices=[("", "Choose…"), *Lead.Segment.choices, ("none", "No segment")], required=False
    )
    tag = forms.CharField(label="Tag", max_length=50, required=False)
    confirm = forms.BooleanField(required=False)

    def __init__(self, *args, user: User, team: list[User], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].choices = [
            ("", "Choose…"),
            ("unassigned", "Unassigned"),
            *people_choices(user=user, team=team),
        ]

    def clean(self):
        cleaned = super().clean()
        action = cleaned.get("action")
        needs = {
            "assign": ("assignee", "Choose whom to assign the leads to."),
            "status": ("status", "Choose the status to set."),
            "segment": ("segment", "Choose the segment to set."),
            "tag": ("tag", "Give the tag to add."),
        }.get(action)
        if needs and not (cleaned.get(needs[0]) or "").strip():
            self.add_error(needs[0], needs[1])
        return cleaned


class EngagementForm(forms.Form):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "engagement-%s")
        super().__init__(*args, **kwargs)

    type = forms.ChoiceField(label="Activity", choices=Engagement.Type.choices)
    notes = forms.CharField(max_length=5000, required=False, widget=forms.Textarea(attrs={"rows": 2}))
    at = forms.DateTimeField(
        label="When",
        required=False,
        help_text="Leave empty for now.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
    )


class LeadTagsForm(forms.Form):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "lead-tags-%s")
        super().__init__(*args, **kwargs)

    tags = forms.CharField(label="Add tags", max_length=500, help_text="Comma-separated; new names become new tags.")

    def clean_tags(self) -> list[str]:
        names = [name.strip() for name in self.cleaned_data["tags"].split(",")]
        names = [name for name in dict.fromkeys(names) if name]
        if not names:
            raise forms.ValidationError("Give a tag name.")
        if any(len(name) > 50 for name in names):
            raise forms.ValidationError("A tag name has at most 50 characters.")
        return names


class OptOutForm(forms.Form):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "opt-out-%s")
        super().__init__(*args, **kwargs)

    reason = forms.CharField(label="Reason", max_length=200, required=False)
