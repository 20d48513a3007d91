"""The reply box of a lead's conversation: free-form text, or an approved template
with its variables. Shapes only; the rules (opt-out, the 24-hour window, the
template's status) are messaging.services.message_send's."""

from django import forms

from messaging.models import Template
from messaging.services import TemplateRef

# WhatsApp's limit for a text message body.
MAX_TEXT = 4096


def template_body(template: Template) -> str:
    """The template's body text with its {{n}} placeholders, for the picker."""
    for component in template.components or []:
        if isinstance(component, dict) and str(component.get("type", "")).upper() == "BODY":
            return str(component.get("text", ""))
    return ""


def template_value(template: Template) -> str:
    return f"{template.name}|{template.language}"


class ReplyTextForm(forms.Form):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "reply-%s")
        super().__init__(*args, **kwargs)

    kind = forms.CharField(widget=forms.HiddenInput, initial="text")
    message = forms.CharField(
        label="Your message",
        max_length=MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Write a reply…"}),
    )


class ReplyTemplateForm(forms.Form):
    kind = forms.CharField(widget=forms.HiddenInput, initial="template")
    template = forms.ChoiceField(label="Template")
    params = forms.CharField(
        label="Variables",
        required=False,
        max_length=2000,
        help_text="One per line, in order: the first fills {{1}}, the second {{2}}, …",
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args, templates: list[Template], **kwargs):
        kwargs.setdefault("auto_id", "reply-template-%s")
        super().__init__(*args, **kwargs)
        self.fields["template"].choices = [("", "Choose a template…")] + [
            (template_value(t), f"{t.name} ({t.language})" + (f" — {template_body(t)}" if template_body(t) else ""))
            for t in templates
        ]

    def template_ref(self) -> TemplateRef:
        name, _, language = self.cleaned_data["template"].partition("|")
        params = [line.strip() for line in self.cleaned_data["params"].splitlines() if line.strip()]
        return TemplateRef(name=name, language=language, params=params)
