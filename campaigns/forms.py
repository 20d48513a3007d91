"""Forms of the drip and scheduled-message pages. They only shape input into the
mappings campaigns.services expects; the rules (steps, templates, send windows,
recipients, times) are the services', whose ValidationFailed errors are put back on
these forms' fields."""

import re

from django import forms

from campaigns.models import DripStep, ScheduledMessage
from heroshhi.errors import ValidationFailed
from messaging.models import Template

MAX_STEPS = 50
EXTRA_STEPS = 2  # empty rows to add steps without JavaScript
MAX_RECIPIENTS_TEXT = 100_000


def template_choices(templates) -> list[tuple[str, str]]:
    """Approved templates as "name|language" choices."""
    return [("", "— No template —")] + [
        (f"{t.name}|{t.language}", f"{t.name} ({t.language})")
        for t in templates
        if t.status == Template.Status.APPROVED
    ]


def _split_template(value: str) -> tuple[str, str]:
    name, _, language = (value or "").partition("|")
    return name, language


def _lines(value: str) -> list[str]:
    return [line.strip() for line in (value or "").splitlines() if line.strip()]


class DripForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
    is_active = forms.BooleanField(required=False, initial=True, label="Active (leads can be enrolled)")
    stop_on_reply = forms.BooleanField(required=False, initial=True, label="Stop when the lead replies")
    stop_on_conversion = forms.BooleanField(required=False, initial=True, label="Stop when the lead converts")
    send_window_start = forms.TimeField(
        required=False,
        label="Send from",
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text="Optional daily window, in the account's time zone.",
    )
    send_window_end = forms.TimeField(
        required=False, label="Send until", widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M")
    )

    @staticmethod
    def initial_for(drip) -> dict:
        return {
            "name": drip.name,
            "description": drip.description,
            "is_active": drip.is_active,
            "stop_on_reply": drip.stop_on_reply,
            "stop_on_conversion": drip.stop_on_conversion,
            "send_window_start": drip.send_window_start,
            "send_window_end": drip.send_window_end,
        }


class StepForm(forms.Form):
    delay_amount = forms.IntegerField(min_value=0, max_value=100_000, initial=1, label="Wait")
    delay_unit = forms.ChoiceField(choices=DripStep.DelayUnit.choices, initial=DripStep.DelayUnit.DAYS, label="Unit")
    text = forms.CharField(required=False, max_length=4096, widget=forms.Textarea(attrs={"rows": 3}))
    template = forms.ChoiceField(required=False, choices=(), label="Or a template")
    template_params = forms.CharField(
        required=False,
        label="Template parameters",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="One per line, e.g. {{name}}.",
    )

    def __init__(self, *args, templates=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["template"].choices = template_choices(templates)

    def is_blank(self) -> bool:
        data = self.cleaned_data
        return not (data.get("text") or "").strip() and not data.get("template")

    def service_data(self) -> dict:
        data = self.cleaned_data
        name, language = _split_template(data.get("template"))
        return {
            "delay_amount": data["delay_amount"],
            "delay_unit": data["delay_unit"],
            "text": data.get("text") or "",
            "template_name": name,
            "template_language": language,
            "template_params": _lines(data.get("template_params")) if name else [],
        }

    @staticmethod
    def initial_for(step) -> dict:
        return {
            "delay_amount": step.delay_amount,
            "delay_unit": step.delay_unit,
            "text": step.text,
            "template": f"{step.template_name}|{step.template_language}" if step.template_name else "",
            "template_params": "\n".join(step.template_params or []),
        }


class BaseStepFormSet(forms.BaseFormSet):
    def __init__(self, *args, templates=(), **kwargs):
        self.templates = templates
        super().__init__(*args, **kwargs)

    def get_form_kwargs(self, index):
        return {"templates": self.templates}

    @property
    def empty_form(self):
        form = self.form(auto_id=self.auto_id, prefix=self.add_prefix("__prefix__"), templates=self.templates)
        self.add_fields(form, None)
        return form

    def kept_forms(self) -> list[StepForm]:
        """The steps to save, in the order the person gave (ORDER, then position):
        deleted and blank rows left out."""
        kept = []
        for index, form in enumerate(self.forms):
            if not hasattr(form, "cleaned_data") or not form.cleaned_data:
                continue
            if form.cleaned_data.get("DELETE") or form.is_blank():
                continue
            order = form.cleaned_data.get("ORDER")
            kept.append((order if order is not None else index + 1, index, form))
        return [form for _, _, form in sorted(kept, key=lambda item: (item[0], item[1]))]


StepFormSet = forms.formset_factory(
    StepForm,
    formset=BaseStepFormSet,
    extra=EXTRA_STEPS,
    can_order=True,
    can_delete=True,
    max_num=MAX_STEPS,
    validate_max=True,
)


STEP_FIELD_NAMES = {"template_name": "template", "template_language": "template"}
STEP_KEY = re.compile(r"^steps\.(\d+)(?:\.(\w+))?$")


def add_drip_errors(form: DripForm, step_forms: list[StepForm], exc: ValidationFailed) -> None:
    """A drip service's errors on the drip form and the step rows (``steps.<i>.<field>``
    names the i-th step sent, which is ``step_forms[i]``)."""
    for key, messages in (exc.errors or {None: [exc.message]}).items():
        messages = messages if isinstance(messages, list | tuple) else [messages]
        match = STEP_KEY.match(key or "")
        if match and int(match.group(1)) < len(step_forms):
            step_form = step_forms[int(match.group(1))]
            name = STEP_FIELD_NAMES.get(match.group(2), match.group(2))
            for message in messages:
                step_form.add_error(name if name in step_form.fields else None, str(message))
            continue
        for message in messages:
            if key == "steps":
                form.add_error(None, f"Steps: {message}")
            else:
                form.add_error(key if key in form.fields else None, str(message))


# --- Scheduled messages -----------------------------------------------------------------


class ScheduledMessageForm(forms.Form):
    message = forms.CharField(required=False, max_length=4096, widget=forms.Textarea(attrs={"rows": 4}))
    template = forms.ChoiceField(required=False, choices=(), label="Or a template")
    template_params = forms.CharField(
        required=False, label="Template parameters", widget=forms.Textarea(attrs={"rows": 2}), help_text="One per line."
    )
    recipients = forms.CharField(
        max_length=MAX_RECIPIENTS_TEXT,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Phone numbers, one per line or separated by commas.",
    )
    scheduled_time = forms.CharField(
        label="Send at",
        max_length=32,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="In the account's time zone.",
    )
    recurrence = forms.ChoiceField(choices=ScheduledMessage.Recurrence.choices, initial="none", label="Repeat")

    def __init__(self, *args, templates=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["template"].choices = template_choices(templates)

    def recipient_list(self) -> list[str]:
        return [part.strip() for part in re.split(r"[,;\n]", self.cleaned_data["recipients"]) if part.strip()]

    def template_ref(self):
        from messaging.services import TemplateRef

        name, language = _split_template(self.cleaned_data.get("template"))
        if not name:
            return None
        return TemplateRef(name=name, language=language, params=_lines(self.cleaned_data.get("template_params")))


def add_scheduled_errors(form: ScheduledMessageForm, exc: ValidationFailed) -> None:
    for key, messages in (exc.errors or {None: [exc.message]}).items():
        for message in messages if isinstance(messages, list | tuple) else [messages]:
            form.add_error(key if key in form.fields else None, str(message))
