"""Shapes of the lead API: camelCase as in the Heroshhi document, phones as digits
with the country code. Input serializers check types and enums; the rules (phone
format and uniqueness, assignees, tenancy) live in leads.services."""

from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from leads.models import Engagement, Lead, Tag
from leads.phones import display_phone

# Input field → model field.
LEAD_FIELD_MAP = {
    "name": "name",
    "phone": "phone",
    "email": "email",
    "source": "source",
    "inquiry": "inquiry",
    "segment": "segment",
    "status": "status",
    "assignedTo": "assigned_to",
    "isOptedOut": "is_opted_out",
    "optOutReason": "opt_out_reason",
    "tags": "tags",
    "notes": "notes",
}


def to_model_fields(data: dict) -> dict:
    return {LEAD_FIELD_MAP[key]: value for key, value in data.items() if key in LEAD_FIELD_MAP}


class TagOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ["id", "name", "color"]


class TagWithCountOutputSerializer(serializers.ModelSerializer):
    leadCount = serializers.IntegerField(source="lead_count", read_only=True)

    class Meta:
        model = Tag
        fields = ["id", "name", "color", "leadCount"]


class TagInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=50)
    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False, help_text="Hex colour, e.g. #ff4444.")


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string", "maxLength": 50}]})
class TagRefField(serializers.Field):
    """A tag by id (integer) or by name (string, created when new)."""

    default_error_messages = {"invalid": "A tag is an integer id or a name of at most 50 characters."}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, int):
            return data
        if isinstance(data, str) and 0 < len(data.strip()) <= 50 and "\x00" not in data:
            return data.strip()
        self.fail("invalid")

    def to_representation(self, value):
        return value


class LeadTagsInputSerializer(serializers.Serializer):
    tags = serializers.ListField(child=TagRefField(), allow_empty=False, max_length=50)


class LeadOutputSerializer(serializers.ModelSerializer):
    phone = serializers.SerializerMethodField()
    segment = serializers.SerializerMethodField()
    assignedTo = serializers.UUIDField(source="assigned_to_id", allow_null=True)
    assignedToName = serializers.SerializerMethodField()
    isOptedOut = serializers.BooleanField(source="is_opted_out")
    optedOutAt = serializers.DateTimeField(source="opted_out_at", allow_null=True)
    optOutReason = serializers.CharField(source="opt_out_reason")
    tags = TagOutputSerializer(many=True)
    lastInboundAt = serializers.DateTimeField(source="last_inbound_at", allow_null=True)
    lastOutboundAt = serializers.DateTimeField(source="last_outbound_at", allow_null=True)
    lastMessageAt = serializers.DateTimeField(source="last_message_at", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        model = Lead
        fields = [
            "id",
            "name",
            "phone",
            "email",
            "source",
            "inquiry",
            "segment",
            "status",
            "assignedTo",
            "assignedToName",
            "isOptedOut",
            "optedOutAt",
            "optOutReason",
            "tags",
            "notes",
            "lastInboundAt",
            "lastOutboundAt",
            "lastMessageAt",
            "createdAt",
            "updatedAt",
        ]

    def get_phone(self, lead) -> str:
        return display_phone(lead.phone)

    def get_segment(self, lead) -> str | None:
        return lead.segment or None

    def get_assignedToName(self, lead) -> str | None:
        user = lead.assigned_to
        return (user.name or user.email) if user else None


class EngagementOutputSerializer(serializers.ModelSerializer):
    userId = serializers.UUIDField(source="user_id", allow_null=True)
    userName = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Engagement
        fields = ["id", "type", "notes", "userId", "userName", "at", "createdAt"]

    def get_userName(self, engagement) -> str | None:
        user = engagement.user
        return (user.name or user.email) if user else None


class LeadDetailOutputSerializer(LeadOutputSerializer):
    engagements = serializers.SerializerMethodField()

    class Meta(LeadOutputSerializer.Meta):
        fields = [*LeadOutputSerializer.Meta.fields, "engagements"]

    def get_engagements(self, lead) -> list[dict]:
        recent = self.context.get("engagements", [])
        return EngagementOutputSerializer(recent, many=True).data


class LeadInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    phone = serializers.CharField(max_length=40, help_text="With country code, e.g. 919876543210 or +91 98765 43210.")
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    source = serializers.CharField(max_length=100, required=False, allow_blank=True)
    inquiry = serializers.CharField(max_length=5000, required=False, allow_blank=True)
    segment = serializers.ChoiceField(choices=Lead.Segment.choices, required=False, allow_blank=True, allow_null=True)
    status = serializers.ChoiceField(choices=Lead.Status.choices, required=False)
    assignedTo = serializers.UUIDField(required=False, allow_null=True)
    isOptedOut = serializers.BooleanField(required=False)
    optOutReason = serializers.CharField(max_length=200, required=False, allow_blank=True)
    tags = serializers.ListField(child=TagRefField(), required=False, max_length=50)
    notes = serializers.CharField(max_length=10000, required=False, allow_blank=True)

    def validate_segment(self, value):
        return value or ""


class LeadFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Lead.Status.choices, required=False)
    segment = serializers.ChoiceField(choices=Lead.Segment.choices, required=False)
    source = serializers.CharField(max_length=100, required=False)
    assignedTo = serializers.CharField(
        max_length=64, required=False, help_text="A user id of the account, `me` or `unassigned`."
    )
    tag = serializers.CharField(max_length=50, required=False, help_text="A tag id or name.")
    isOptedOut = serializers.BooleanField(required=False, allow_null=True, default=None)
    createdFrom = serializers.CharField(required=False, help_text="ISO date or date-time (inclusive).")
    createdTo = serializers.CharField(required=False, help_text="ISO date (whole day) or date-time (inclusive).")
    search = serializers.CharField(max_length=200, required=False, help_text="Matches name, phone or email.")

    def _moment(self, value: str):
        # A bare date first: parse_datetime reads "2026-01-31" as midnight, which would
        # make createdTo=2026-01-31 stop at the start of the day instead of its end.
        # Well-formed but impossible values ("2026-13-45") raise ValueError: a 400 too.
        try:
            moment = parse_date(value) or parse_datetime(value)
        except ValueError:
            moment = None
        if moment is None:
            raise serializers.ValidationError("Use an ISO date (2026-01-31) or date-time.")
        # Day boundaries are computed in the account's zone: keep clear of year 1 and 9999.
        if not 1900 <= moment.year <= 2999:
            raise serializers.ValidationError("Use a date between 1900 and 2999.")
        return moment

    def validate_createdFrom(self, value):
        return self._moment(value)

    def validate_createdTo(self, value):
        return self._moment(value)


class BulkIdsSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.UUIDField(), allow_empty=False, max_length=5000)


class BulkFieldsSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Lead.Status.choices, required=False)
    segment = serializers.ChoiceField(choices=Lead.Segment.choices, required=False, allow_blank=True)
    source = serializers.CharField(max_length=100, required=False, allow_blank=True)
    isOptedOut = serializers.BooleanField(required=False)

    def to_internal_value(self, data):
        # A field bulk-update can't set is refused, not silently dropped: a client sending
        # {"status": "lost", "name": "…"} must not believe the names changed.
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                message = "Not a field bulk-update can set (status, segment, source, isOptedOut)."
                raise serializers.ValidationError({key: [message] for key in unknown})
        return super().to_internal_value(data)


class BulkUpdateInputSerializer(BulkIdsSerializer):
    updates = BulkFieldsSerializer(help_text="The fields to set on every lead.")


class BulkAssignInputSerializer(BulkIdsSerializer):
    assignedTo = serializers.UUIDField(allow_null=True, help_text="A user of the account, or null to unassign.")


class BulkResultSerializer(serializers.Serializer):
    success = serializers.BooleanField(help_text="Always true.")
    message = serializers.CharField()
    data = serializers.DictField(child=serializers.IntegerField(), help_text="{count: leads changed}")


class EngagementInputSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=Engagement.Type.choices)
    notes = serializers.CharField(max_length=5000, required=False, allow_blank=True)
    at = serializers.DateTimeField(required=False, help_text="When it happened; now by default.")


class AnalyticsQuerySerializer(serializers.Serializer):
    # `from` is a Python keyword: the query names are mapped in the view.
    date_from = serializers.DateField(required=False)
    date_to = serializers.DateField(required=False)

    def validate(self, attrs):
        if attrs.get("date_from") and attrs.get("date_to"):
            if attrs["date_from"] > attrs["date_to"]:
                raise serializers.ValidationError({"from": ["Must not be after `to`."]})
            if (attrs["date_to"] - attrs["date_from"]).days > 366:
                raise serializers.ValidationError({"from": ["The range is at most 366 days."]})
        return attrs


class LeadWebhookInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    phone = serializers.CharField(max_length=40)
    # Form builders send null for a field left empty: it counts as empty (kept on update).
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True, allow_null=True)
    source = serializers.CharField(max_length=100, required=False, allow_blank=True, allow_null=True)
    inquiry = serializers.CharField(max_length=5000, required=False, allow_blank=True, allow_null=True)
    userId = serializers.UUIDField(help_text="Your account id (Settings → Webhook).")


class ContactOutputSerializer(serializers.Serializer):
    """HeyDoc's contact, exactly as its document shows it."""

    phone = serializers.SerializerMethodField()
    name = serializers.CharField()
    last_message = serializers.SerializerMethodField()
    message_count = serializers.IntegerField()
    unread_count = serializers.IntegerField()
    is_group = serializers.SerializerMethodField()
    tags = TagOutputSerializer(many=True)

    def get_phone(self, lead) -> str:
        return display_phone(lead.phone)

    def get_last_message(self, lead) -> str:
        return lead.last_message_text or ""

    def get_is_group(self, lead) -> bool:
        return False
