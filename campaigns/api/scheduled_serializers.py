"""Shapes of HeyDoc's scheduled-message routes: its own snake_case fields, exactly as
its document shows them. Input serializers check types and sizes only; the rules
(times, phones, transitions, tenancy) live in campaigns.services.scheduled."""

from datetime import UTC

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from campaigns.models import ScheduledMessage
from campaigns.services.scheduled import MAX_RECIPIENTS, MAX_TEXT
from messaging.api.serializers import TemplateInputSerializer


@extend_schema_field({"type": "string", "format": "date-time", "example": "2024-01-16T09:00:00Z"})
class UtcDateTimeField(serializers.Field):
    """An instant as HeyDoc writes it: UTC, seconds, a trailing Z."""

    def to_representation(self, value):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "integer"}], "example": "919876543210"})
class PhoneItemField(serializers.Field):
    """A phone as given: a string (an integer is taken as its digits). Whether it is a
    phone number at all is the service's call, which names every invalid one."""

    default_error_messages = {"invalid": "A phone number is a string such as 919876543210."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, str | int):
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


class ScheduledMessageCreateSerializer(serializers.Serializer):
    message = serializers.CharField(
        max_length=MAX_TEXT,
        required=False,
        allow_blank=True,
        help_text="The text (at most 4096 characters). Per-lead variables {{name}}, {{phone}}, {{email}}, "
        "{{source}} are filled in for each recipient.",
    )
    recipients = serializers.ListField(
        child=PhoneItemField(),
        allow_empty=False,
        max_length=MAX_RECIPIENTS,
        help_text=f"1 to {MAX_RECIPIENTS} phones with country code (without one, the account's default country "
        "applies). Duplicates are collapsed.",
    )
    scheduled_time = serializers.CharField(
        max_length=64,
        help_text="ISO 8601, e.g. 2024-01-16T09:00:00Z or 2024-01-16T14:30:00+05:30. Without an offset it is read "
        "in the account's time zone. At most 60 seconds in the past (then it goes at once), at most five years "
        "ahead.",
    )
    recurrence = serializers.ChoiceField(
        choices=ScheduledMessage.Recurrence.choices, required=False, default=ScheduledMessage.Recurrence.NONE
    )
    template = TemplateInputSerializer(
        required=False,
        help_text="Heroshhi extension, instead of `message`: an approved template. A text reaches only contacts "
        "who wrote in the last 24 hours; a template reaches everyone (except opted-out contacts).",
    )

    def validate(self, attrs):
        if bool(attrs.get("message", "").strip()) == ("template" in attrs):
            raise serializers.ValidationError({"message": ["Give either `message` or `template`."]})
        return attrs


class ScheduledMessageStatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ScheduledMessage.Status.choices)


class ScheduledMessageListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=ScheduledMessage.Status.choices, required=False, help_text="Only the ones with this status."
    )


class ScheduledMessageSerializer(serializers.Serializer):
    """One scheduled message, the document's fields plus ``recurrence``."""

    id = serializers.IntegerField()
    message = serializers.CharField(help_text="The text; for a template, its body as rendered when scheduled.")
    recipients = serializers.ListField(
        child=serializers.CharField(), help_text="Phones as digits with the country code."
    )
    scheduled_time = UtcDateTimeField(help_text="When it goes out, in UTC.")
    status = serializers.ChoiceField(choices=ScheduledMessage.Status.choices)
    created_by = serializers.SerializerMethodField(
        help_text="The email (login name) of the user who scheduled it; null once that user is deleted."
    )
    recurrence = serializers.ChoiceField(choices=ScheduledMessage.Recurrence.choices)

    def get_created_by(self, scheduled) -> str | None:
        return scheduled.created_by.email if scheduled.created_by_id else None


class ScheduledTemplateSerializer(serializers.Serializer):
    name = serializers.CharField()
    language = serializers.CharField()
    params = serializers.ListField(child=serializers.CharField())


class ScheduledDeliveryCountsSerializer(serializers.Serializer):
    queued = serializers.IntegerField()
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    read = serializers.IntegerField()
    failed = serializers.IntegerField()


class ScheduledMessageDetailSerializer(ScheduledMessageSerializer):
    """GET /{id}: the list's object plus what happened (Heroshhi extensions)."""

    template = serializers.SerializerMethodField(help_text="The template sent instead of a text, or null.")
    error = serializers.SerializerMethodField(help_text="Why it failed (or a note on a manual close), or null.")
    queued = serializers.IntegerField(help_text="Messages queued when it went out.")
    skipped_opted_out = serializers.IntegerField()
    skipped_window_closed = serializers.IntegerField(
        help_text="Text not sent to contacts outside the 24-hour window (send a template)."
    )
    skipped_invalid = serializers.IntegerField(help_text="Recipients you may not message (a colleague's contact).")
    delivery = serializers.SerializerMethodField(help_text="Its messages per status.")
    sent_at = serializers.SerializerMethodField(help_text="When its messages were queued, or null.")
    created_at = UtcDateTimeField()
    previous_id = serializers.IntegerField(allow_null=True, help_text="The occurrence this one recurs from.")
    next_id = serializers.SerializerMethodField(help_text="The series' next occurrence, once created.")

    @extend_schema_field(ScheduledTemplateSerializer(allow_null=True))
    def get_template(self, scheduled) -> dict | None:
        if not scheduled.template_name:
            return None
        return {
            "name": scheduled.template_name,
            "language": scheduled.template_language,
            "params": list(scheduled.template_params),
        }

    def get_error(self, scheduled) -> str | None:
        return scheduled.error or None

    @extend_schema_field(ScheduledDeliveryCountsSerializer)
    def get_delivery(self, scheduled) -> dict:
        return self.context["delivery"]

    @extend_schema_field({"type": "string", "format": "date-time", "nullable": True})
    def get_sent_at(self, scheduled) -> str | None:
        return UtcDateTimeField().to_representation(scheduled.sent_at) if scheduled.sent_at else None

    def get_next_id(self, scheduled) -> int | None:
        return self.context["next_id"]
