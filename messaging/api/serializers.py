"""Shapes of the messaging API. Heroshhi's answers are camelCase as in its document;
HeyDoc's use its own snake_case fields and direction words (incoming/outgoing).
Input serializers check types and lengths; the rules (opt-out, the 24-hour window,
template status, tenancy) live in messaging.services."""

from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from leads.api.serializers import LeadFilterSerializer
from leads.phones import display_phone
from messaging.models import Message, Template
from messaging.services import TemplateRef

# WhatsApp's limit for a text message body.
MAX_TEXT = 4096


# --- Messages (Heroshhi) ----------------------------------------------------------------


def is_read(message: Message) -> bool:
    """Inbound: someone on the team has seen it. Outbound: the contact has read it."""
    if message.direction == Message.Direction.INBOUND:
        return message.is_read
    return message.status == Message.Status.READ


class _BlankAsNull(serializers.CharField):
    def to_representation(self, value):
        return value or None


class MessageOutputSerializer(serializers.ModelSerializer):
    leadId = serializers.UUIDField(source="lead_id")
    templateName = _BlankAsNull(source="template_name", allow_null=True)
    templateLanguage = _BlankAsNull(source="template_language", allow_null=True)
    templateParams = serializers.ListField(source="template_params", child=serializers.JSONField())
    errorCode = _BlankAsNull(source="error_code", allow_null=True, help_text="Meta's error code, or OPT_OUT.")
    errorTitle = _BlankAsNull(source="error_title", allow_null=True)
    provider = serializers.ChoiceField(
        choices=Message.Provider.choices, help_text="`sandbox` messages were never sent to WhatsApp."
    )
    sentBy = serializers.UUIDField(source="sent_by_id", allow_null=True, help_text="The user who sent it.")
    isRead = serializers.SerializerMethodField(
        help_text="Inbound: seen by someone on the team. Outbound: read by the contact."
    )
    media = serializers.JSONField(help_text="Inbound media: type, id, mime type, caption; {} otherwise.")
    createdAt = serializers.DateTimeField(source="created_at")
    sentAt = serializers.DateTimeField(source="sent_at", allow_null=True)
    deliveredAt = serializers.DateTimeField(source="delivered_at", allow_null=True)
    readAt = serializers.DateTimeField(source="read_at", allow_null=True)
    failedAt = serializers.DateTimeField(source="failed_at", allow_null=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "leadId",
            "direction",
            "status",
            "type",
            "body",
            "templateName",
            "templateLanguage",
            "templateParams",
            "wamid",
            "errorCode",
            "errorTitle",
            "source",
            "provider",
            "sentBy",
            "isRead",
            "media",
            "createdAt",
            "sentAt",
            "deliveredAt",
            "readAt",
            "failedAt",
        ]

    def get_isRead(self, message) -> bool:
        return is_read(message)


def _moment(value: str):
    # A date first: Python's fromisoformat (inside parse_datetime) reads "2026-01-31"
    # as midnight, which would turn createdTo's whole day into an instant.
    try:
        moment = parse_date(value) or parse_datetime(value)
    except ValueError:
        moment = None
    if moment is None:
        raise serializers.ValidationError("Use an ISO date (2026-01-31) or date-time.")
    return moment


class MessageFilterSerializer(serializers.Serializer):
    direction = serializers.ChoiceField(choices=Message.Direction.choices, required=False)
    status = serializers.ChoiceField(choices=Message.Status.choices, required=False)
    leadId = serializers.UUIDField(required=False)
    type = serializers.ChoiceField(choices=Message.Type.choices, required=False)
    createdFrom = serializers.CharField(required=False, help_text="ISO date (account time zone) or date-time.")
    createdTo = serializers.CharField(required=False, help_text="ISO date (the whole day) or date-time (inclusive).")
    search = serializers.CharField(max_length=200, required=False, help_text="Text contained in the body.")

    def validate_createdFrom(self, value):
        return _moment(value)

    def validate_createdTo(self, value):
        return _moment(value)


class ConversationQuerySerializer(serializers.Serializer):
    order = serializers.ChoiceField(
        choices=[("desc", "Newest first"), ("asc", "Oldest first")],
        required=False,
        default="desc",
        help_text="`desc` (default): page 1 holds the newest messages. `asc`: oldest first.",
    )


class HeyDocHistoryQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        min_value=1, required=False, default=20, help_text="How many of the newest messages (default 20, at most 200)."
    )
    mark_read = serializers.BooleanField(
        required=False, default=False, help_text="1: mark the contact's incoming messages as read by the team."
    )


# --- Sending ----------------------------------------------------------------------------


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "number"}]})
class TemplateParamField(serializers.Field):
    default_error_messages = {"invalid": "A template parameter is a string or a number of at most 1024 characters."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, str | int | float):
            self.fail("invalid")
        text = str(data)
        if len(text) > 1024 or "\x00" in text:
            self.fail("invalid")
        return text

    def to_representation(self, value):
        return value


class TemplateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=512)
    language = serializers.CharField(
        max_length=16, required=False, allow_blank=True, default="", help_text="e.g. en_US; any when left out."
    )
    params = serializers.ListField(
        child=TemplateParamField(), required=False, default=list, max_length=100, help_text="Body parameters, in order."
    )


class _MessageOrTemplate(serializers.Serializer):
    message = serializers.CharField(
        max_length=MAX_TEXT,
        required=False,
        help_text="Free-form text: only inside the 24-hour window (the contact wrote in the last 24 hours).",
    )
    template = TemplateInputSerializer(required=False, help_text="An approved template: allowed at any time.")

    def validate(self, attrs):
        if ("message" in attrs) == ("template" in attrs):
            raise serializers.ValidationError({"message": ["Give either `message` or `template`."]})
        return attrs


def template_ref(data: dict) -> TemplateRef | None:
    template = data.get("template")
    if not template:
        return None
    return TemplateRef(name=template["name"], language=template.get("language", ""), params=template.get("params", []))


class SendInputSerializer(_MessageOrTemplate):
    leadId = serializers.UUIDField()


class WhatsAppSendInputSerializer(_MessageOrTemplate):
    leadId = serializers.UUIDField(required=False)
    phone = serializers.CharField(
        max_length=40, required=False, help_text="Instead of leadId: the phone of an existing lead."
    )

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if ("leadId" in attrs) == ("phone" in attrs):
            raise serializers.ValidationError({"leadId": ["Give either `leadId` or `phone`."]})
        return attrs


class BulkFilterSerializer(LeadFilterSerializer):
    """The lead list's filters."""


class SendBulkInputSerializer(_MessageOrTemplate):
    leadIds = serializers.ListField(child=serializers.UUIDField(), required=False, allow_empty=False, max_length=5000)
    filter = BulkFilterSerializer(required=False, help_text="Instead of leadIds: the lead list's filters.")

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if ("leadIds" in attrs) == ("filter" in attrs):
            raise serializers.ValidationError({"leadIds": ["Give either `leadIds` or `filter`."]})
        return attrs


class SendBulkResultSerializer(serializers.Serializer):
    requested = serializers.IntegerField(help_text="Leads named or matched (duplicates counted once).")
    queued = serializers.IntegerField(help_text="Messages created and queued for the worker.")
    skipped_opted_out = serializers.IntegerField(help_text="Opted-out leads: skipped, nothing sent.")
    invalid = serializers.IntegerField(help_text="Ids naming no lead you can see.")
    windowClosed = serializers.IntegerField(
        help_text="Free-form text only: leads outside the 24-hour window (send a template instead)."
    )


class HeyDocSendInputSerializer(serializers.Serializer):
    phone_number = serializers.CharField(max_length=40, help_text="With country code, e.g. 919876543210.")
    message = serializers.CharField(max_length=MAX_TEXT, required=False)
    template = TemplateInputSerializer(
        required=False,
        help_text="Heroshhi extension, instead of `message`: an approved template (needed for new contacts, "
        "whose 24-hour window is closed).",
    )

    def validate(self, attrs):
        if ("message" in attrs) == ("template" in attrs):
            raise serializers.ValidationError({"message": ["Give either `message` or `template`."]})
        return attrs


# --- HeyDoc messages --------------------------------------------------------------------


class HeyDocMessageSerializer(serializers.Serializer):
    """A message as HeyDoc's document shows it. ``business_number`` in the context is
    our side: the connected number's digits, or "sandbox"."""

    id = serializers.UUIDField(
        help_text="The message's id. HeyDoc shows an integer; Heroshhi's ids are UUIDs, so this is a UUID "
        "string (no stable integer exists). Unique and stable; use it as the key."
    )
    message_id = serializers.CharField(source="wamid", allow_null=True, help_text="WhatsApp's message id (wamid).")
    sender_phone = serializers.SerializerMethodField()
    receiver_phone = serializers.SerializerMethodField()
    message_type = serializers.SerializerMethodField(help_text="text, template, or the media type (image, …).")
    message_text = serializers.CharField(source="body")
    timestamp = serializers.DateTimeField(source="created_at")
    direction = serializers.SerializerMethodField()
    is_read = serializers.SerializerMethodField(
        help_text="incoming: seen by someone on the team; outgoing: read by the contact."
    )
    status = serializers.ChoiceField(choices=Message.Status.choices)

    def _ours(self) -> str:
        return self.context["business_number"]

    def _theirs(self, message) -> str:
        # The history of one lead passes its phone, so no message loads its lead.
        return display_phone(self.context.get("lead_phone") or message.lead.phone)

    def get_sender_phone(self, message) -> str:
        return self._theirs(message) if message.direction == Message.Direction.INBOUND else self._ours()

    def get_receiver_phone(self, message) -> str:
        return self._ours() if message.direction == Message.Direction.INBOUND else self._theirs(message)

    def get_message_type(self, message) -> str:
        if message.type == Message.Type.MEDIA:
            return str((message.media or {}).get("type") or "media")
        return message.type

    @extend_schema_field({"type": "string", "enum": ["incoming", "outgoing"]})
    def get_direction(self, message) -> str:
        return "incoming" if message.direction == Message.Direction.INBOUND else "outgoing"

    def get_is_read(self, message) -> bool:
        return is_read(message)


class HeyDocMessageWithLeadSerializer(HeyDocMessageSerializer):
    lead_id = serializers.UUIDField(help_text="Heroshhi extension: the lead (contact) it was sent to.")


# --- Templates --------------------------------------------------------------------------


class TemplateOutputSerializer(serializers.ModelSerializer):
    approved = serializers.SerializerMethodField(help_text="Only APPROVED templates can be sent.")
    body = serializers.SerializerMethodField(help_text="The BODY component's text, with {{1}}-style parameters.")
    isSandbox = serializers.BooleanField(source="is_sandbox", help_text="A sandbox template, not Meta's.")
    syncedAt = serializers.DateTimeField(source="synced_at")

    class Meta:
        model = Template
        fields = [
            "id",
            "name",
            "language",
            "category",
            "status",
            "approved",
            "body",
            "components",
            "isSandbox",
            "syncedAt",
        ]

    def get_approved(self, template) -> bool:
        return template.status == Template.Status.APPROVED

    def get_body(self, template) -> str:
        for component in template.components or []:
            if isinstance(component, dict) and str(component.get("type", "")).upper() == "BODY":
                return str(component.get("text", ""))
        return ""


class TemplateQuerySerializer(serializers.Serializer):
    refresh = serializers.BooleanField(required=False, default=False, help_text="1: sync from WhatsApp first.")


# --- The WhatsApp connection ------------------------------------------------------------


class ConnectInputSerializer(serializers.Serializer):
    phoneNumberId = serializers.RegexField(r"^\d{1,64}$", help_text="The Cloud API phone-number id (digits).")
    wabaId = serializers.RegexField(r"^\d{1,64}$", help_text="The WhatsApp Business Account id (digits).")
    accessToken = serializers.CharField(max_length=2048, trim_whitespace=True, style={"input_type": "password"})
    appSecret = serializers.CharField(max_length=256, trim_whitespace=True, style={"input_type": "password"})
    verifyToken = serializers.CharField(
        min_length=8, max_length=256, help_text="The token you type in Meta's webhook settings."
    )
    throughputCap = serializers.IntegerField(
        min_value=1, max_value=1000, required=False, default=80, help_text="Messages per second (default 80)."
    )


class CoexistenceSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(
        required=False, help_text="The WhatsApp Business app runs on the same number (caps throughput at 20/s)."
    )
    recordAppEchoes = serializers.BooleanField(
        required=False, help_text="Record messages sent from the phone app as outbound messages."
    )
    syncAppContacts = serializers.BooleanField(required=False, help_text="Create leads from the phone app's contacts.")

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError(
                {"enabled": ["Give at least one of enabled, recordAppEchoes, syncAppContacts."]}
            )
        return attrs


class CoexistenceOutputSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    recordAppEchoes = serializers.BooleanField(source="record_app_echoes")
    syncAppContacts = serializers.BooleanField(source="sync_app_contacts")


class WhatsAppStatusSerializer(serializers.Serializer):
    """Never the access token or the app secret."""

    provider = serializers.ChoiceField(choices=Message.Provider.choices)
    connected = serializers.BooleanField(help_text="A Cloud API number whose token works.")
    sandbox = serializers.BooleanField(help_text="True: no connection; messages go to the built-in sandbox.")
    status = serializers.CharField(
        help_text="`sandbox`, `connected`, `token_invalid` (Meta refused the access token, error 190: reconnect "
        "with a new one) or `error`."
    )
    statusDetail = serializers.CharField(source="status_detail")
    phoneNumberId = serializers.CharField(source="phone_number_id", allow_null=True)
    wabaId = serializers.CharField(source="waba_id", allow_null=True)
    displayPhoneNumber = serializers.CharField(source="display_phone_number", allow_null=True)
    verifiedName = serializers.CharField(source="verified_name", allow_null=True)
    qualityRating = serializers.CharField(
        source="quality_rating",
        allow_null=True,
        help_text="Meta's quality rating of the number when it was connected: GREEN, YELLOW, RED or UNKNOWN.",
    )
    businessNumber = serializers.CharField(
        source="business_number", help_text="Digits of the number, or `sandbox` (HeyDoc's sender/receiver phone)."
    )
    throughputCap = serializers.IntegerField(source="throughput_cap", allow_null=True)
    coexistence = CoexistenceOutputSerializer(allow_null=True)
    templatesSyncedAt = serializers.DateTimeField(source="templates_synced_at", allow_null=True)
    connectedAt = serializers.DateTimeField(source="connected_at", allow_null=True)
    webhookUrl = serializers.CharField(source="webhook_url", help_text="The callback URL to give Meta.")
