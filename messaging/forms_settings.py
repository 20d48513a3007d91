"""Forms of the WhatsApp settings page. They shape input as the API's serializers do
(messaging/api/serializers.py: ConnectInputSerializer, CoexistenceSerializer); the
checks against Meta are messaging.services', whose ValidationFailed errors are put
back on these fields. Secrets are password inputs that never render a value back."""

from django import forms
from django.core.validators import RegexValidator

from heroshhi.errors import ValidationFailed

_DIGITS = RegexValidator(r"^\d{1,64}$", "Digits only, as shown in Meta's WhatsApp Manager.")


def _secret(**kwargs) -> forms.CharField:
    return forms.CharField(widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}), **kwargs)


class ConnectForm(forms.Form):
    phone_number_id = forms.CharField(
        label="Phone-number id", max_length=64, validators=[_DIGITS], help_text="WhatsApp Manager → API setup."
    )
    waba_id = forms.CharField(
        label="WhatsApp Business Account id", max_length=64, validators=[_DIGITS], help_text="Digits."
    )
    access_token = _secret(
        label="Access token", max_length=2048, help_text="A permanent system-user token; stored encrypted."
    )
    app_secret = _secret(
        label="App secret", max_length=256, help_text="Checks the signature of Meta's webhook; stored encrypted."
    )
    verify_token = _secret(
        label="Webhook verify token",
        min_length=8,
        max_length=256,
        help_text="Any phrase you choose (8+ characters); paste the same in Meta's webhook settings.",
    )
    throughput_cap = forms.IntegerField(
        label="Throughput cap (messages a second)", min_value=1, max_value=1000, initial=80, required=False
    )

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "phone_number_id": data["phone_number_id"],
            "waba_id": data["waba_id"],
            "access_token": data["access_token"].strip(),
            "app_secret": data["app_secret"].strip(),
            "verify_token": data["verify_token"],
            "throughput_cap": data.get("throughput_cap") or 80,
        }


class CoexistenceForm(forms.Form):
    enabled = forms.BooleanField(
        required=False,
        label="Coexistence: the WhatsApp Business app runs on the same number",
        help_text="Caps the throughput at 20 messages a second (Meta's limit for coexistence numbers).",
    )
    record_app_echoes = forms.BooleanField(
        required=False, label="Record messages sent from the phone app as outbound messages"
    )
    sync_app_contacts = forms.BooleanField(required=False, label="Create leads from the phone app's contacts")


# The API's field names (service errors) → this form's.
CONNECT_FIELDS = {
    "phoneNumberId": "phone_number_id",
    "wabaId": "waba_id",
    "accessToken": "access_token",
    "appSecret": "app_secret",
    "verifyToken": "verify_token",
    "throughputCap": "throughput_cap",
}


def add_connect_errors(form: ConnectForm, exc: ValidationFailed) -> None:
    for key, messages in (exc.errors or {None: [exc.message]}).items():
        field = CONNECT_FIELDS.get(key or "")
        for message in messages if isinstance(messages, list | tuple) else [messages]:
            form.add_error(field, str(message))
    if exc.errors and exc.message:
        form.add_error(None, exc.message)
