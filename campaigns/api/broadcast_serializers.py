"""Shapes of the broadcast routes, camelCase as in the Heroshhi document. Input
serializers check types, enums and sizes, and refuse unknown fields (a misspelt
``scheduledAt`` or ``filter`` key must not turn into an immediate send to everyone);
the rules (tenancy, variables, templates, audiences) live in
campaigns.services.broadcasts."""

from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from campaigns.models import Broadcast
from campaigns.selectors.broadcasts import MAX_LEAD_IDS
from campaigns.services.broadcasts import MAX_TEXT
from leads.api.serializers import TagRefField
from leads.models import Lead
from messaging.api.serializers import TemplateInputSerializer


class _StrictSerializer(serializers.Serializer):
    """Refuses fields it doesn't know, naming them."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(str(key) for key in set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)


class TextField(serializers.CharField):
    """A string, and only a string: DRF's CharField would take 42 or true as text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class OneOrManyChoiceField(serializers.ListField):
    """A choice, or a list of choices (any of): ``"hot"`` or ``["hot", "warm"]``."""

    def __init__(self, *, choices, **kwargs):
        super().__init__(child=serializers.ChoiceField(choices=choices), allow_empty=False, max_length=10, **kwargs)

    def to_internal_value(self, data):
        return super().to_internal_value([data] if isinstance(data, str) else data)


class AudienceFilterSerializer(_StrictSerializer):
    status = OneOrManyChoiceField(
        choices=Lead.Status.choices, required=False, help_text="A lead status or a list of them (any of)."
    )
    segment = OneOrManyChoiceField(
        choices=Lead.Segment.choices, required=False, help_text="hot/warm/cold, or a list of them (any of)."
    )
    tags = serializers.ListField(
        child=TagRefField(),
        required=False,
        allow_empty=False,
        max_length=50,
        help_text="Tag ids (integers) or names (any case): leads with any of them.",
    )
    tag = TagRefField(required=False, help_text="One tag id or name, as in the lead list (joins `tags`).")
    source = TextField(max_length=100, required=False, help_text="The lead source, any case.")
    assignedTo = TextField(max_length=64, required=False, help_text="A user id of the account, `me` or `unassigned`.")

    def validate(self, attrs):
        if "tag" in attrs:
            attrs["tags"] = [*attrs.get("tags", []), attrs.pop("tag")]
        return attrs


class AudienceSerializer(_StrictSerializer):
    leadIds = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        allow_empty=False,
        max_length=MAX_LEAD_IDS,
        help_text=f"Leads by id (at most {MAX_LEAD_IDS:,}); every one must be a lead you can see.",
    )
    filter = AudienceFilterSerializer(
        required=False,
        help_text="Instead of leadIds: leads matching every given criterion, evaluated when the broadcast "
        "starts. `{}` is every lead you can see.",
    )

    def validate(self, attrs):
        if ("leadIds" in attrs) == ("filter" in attrs):
            raise serializers.ValidationError({"leadIds": ["Give either `leadIds` or `filter`."]})
        return attrs


@extend_schema_field({"type": "string", "format": "date-time", "example": "2026-03-01T09:30:00+05:30"})
class MomentField(serializers.Field):
    """An ISO 8601 date-time, kept naive when it has no offset (the service reads it in
    the account's time zone)."""

    default_error_messages = {"invalid": "Use an ISO 8601 date-time, e.g. 2026-03-01T09:30:00+05:30."}

    def to_internal_value(self, data):
        if not isinstance(data, str) or len(data) > 64:
            self.fail("invalid")
        try:
            moment = parse_datetime(data.strip())
        except ValueError:
            moment = None
        if moment is None or not 2000 <= moment.year <= 2999:
            self.fail("invalid")
        return moment

    def to_representation(self, value):
        return value.isoformat()


class _Content(serializers.Serializer):
    message = TextField(
        max_length=MAX_TEXT,
        required=False,
        help_text="Free-form text with per-lead variables ({{name}}, {{phone}}, …). Reaches only leads inside "
        "the 24-hour window; the others are skipped and counted (`skippedWindowClosed`).",
    )
    template = TemplateInputSerializer(
        required=False,
        help_text="An approved template; `params` may hold per-lead variables. Reaches every lead who hasn't "
        "opted out.",
    )


class BroadcastCreateSerializer(AudienceSerializer, _Content):
    name = TextField(max_length=200, required=False, allow_blank=True, help_text="Default: `Broadcast <date time>`.")
    scheduledAt = MomentField(
        required=False,
        allow_null=True,
        help_text="When to send: ISO 8601 with an offset (without one: the account's time zone). In the past or "
        "left out: now. At most 366 days ahead.",
    )
    draft = serializers.BooleanField(required=False, default=False, help_text="true: save without sending.")

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if ("message" in attrs) == ("template" in attrs):
            raise serializers.ValidationError({"message": ["Give either `message` or `template`."]})
        return attrs


class BroadcastSendSerializer(_StrictSerializer):
    scheduledAt = MomentField(
        required=False, allow_null=True, help_text="Send at this time instead of now (ISO 8601, as at creation)."
    )


class BroadcastListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Broadcast.Status.choices, required=False)


class AudienceQuerySerializer(serializers.Serializer):
    """GET /api/broadcasts/audience: the filter as query parameters."""

    status = serializers.CharField(required=False, max_length=200, help_text="Comma-separated statuses (any of).")
    segment = serializers.CharField(required=False, max_length=100, help_text="Comma-separated segments (any of).")
    tags = serializers.CharField(required=False, max_length=2000, help_text="Comma-separated tag ids or names.")
    tag = serializers.CharField(required=False, max_length=50)
    source = serializers.CharField(required=False, max_length=100)
    assignedTo = serializers.CharField(required=False, max_length=64)

    def to_filter(self) -> dict:
        """The query as the body's ``filter`` (for AudienceFilterSerializer)."""
        data = dict(self.validated_data)
        result: dict = {}
        for key in ("status", "segment"):
            if data.get(key):
                result[key] = [part.strip() for part in data[key].split(",") if part.strip()]
        if data.get("tags"):
            result["tags"] = [
                int(part) if part.strip().isdigit() else part.strip()
                for part in data["tags"].split(",")
                if part.strip()
            ]
        if data.get("tag"):
            text = data["tag"].strip()
            result["tag"] = int(text) if text.isdigit() else text
        for key in ("source", "assignedTo"):
            if data.get(key):
                result[key] = data[key]
        return result


# --- Output -------------------------------------------------------------------------------


class TotalsSerializer(serializers.Serializer):
    queued = serializers.IntegerField(help_text="Waiting for the worker (paced at the number's throughput).")
    sent = serializers.IntegerField(help_text="Accepted by WhatsApp; no delivery receipt yet.")
    delivered = serializers.IntegerField()
    read = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Refused by WhatsApp (not counting opted-out leads).")


class AudienceCountsSerializer(serializers.Serializer):
    matched = serializers.IntegerField(help_text="Leads the audience names that you can see.")
    recipients = serializers.IntegerField(help_text="Of those, the ones not opted out: who would get a message.")
    optedOut = serializers.IntegerField(help_text="Opted out: skipped.")
    windowClosed = serializers.IntegerField(
        help_text="Recipients outside the 24-hour window: a text broadcast skips them, a template reaches them."
    )


class BroadcastOutputSerializer(serializers.ModelSerializer):
    message = serializers.SerializerMethodField(help_text="The text, or null for a template broadcast.")
    template = serializers.SerializerMethodField(help_text="{name, language, params}, or null for a text.")
    audience = serializers.SerializerMethodField(
        help_text='`{"leadIds": <count>}` or `{"filter": {…}}` as stored (tags as ids, `me` as your user id).'
    )
    scheduledAt = serializers.DateTimeField(source="scheduled_at", allow_null=True)
    totals = serializers.SerializerMethodField(help_text="Messages by their current status (one aggregate query).")
    skippedOptedOut = serializers.SerializerMethodField(
        help_text="Opted out when the audience was snapshotted, plus those who opted out before their message "
        "went (nothing was sent to them)."
    )
    skippedInvalid = serializers.IntegerField(
        source="skipped_invalid", help_text="A variable rendered empty for the lead (Meta refuses empty parameters)."
    )
    skippedWindowClosed = serializers.IntegerField(
        source="skipped_window_closed", help_text="Text broadcasts: leads outside the 24-hour window."
    )
    cancelledUnsent = serializers.IntegerField(source="cancelled_unsent", help_text="Queued messages a cancel dropped.")
    error = serializers.SerializerMethodField(help_text="Why the broadcast failed, or null.")
    createdBy = serializers.UUIDField(source="created_by_id", allow_null=True)
    createdByName = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at")
    startedAt = serializers.DateTimeField(source="started_at", allow_null=True)
    finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)

    class Meta:
        model = Broadcast
        fields = [
            "id",
            "name",
            "status",
            "message",
            "template",
            "audience",
            "scheduledAt",
            "recipients",
            "totals",
            "skippedOptedOut",
            "skippedInvalid",
            "skippedWindowClosed",
            "cancelledUnsent",
            "error",
            "createdBy",
            "createdByName",
            "createdAt",
            "startedAt",
            "finishedAt",
        ]

    def get_message(self, broadcast) -> str | None:
        return broadcast.text or None

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "properties": {
                "name": {"type": "string"},
                "language": {"type": "string"},
                "params": {"type": "array", "items": {"type": "string"}},
            },
        }
    )
    def get_template(self, broadcast):
        if not broadcast.template_name:
            return None
        return {
            "name": broadcast.template_name,
            "language": broadcast.template_language,
            "params": list(broadcast.template_params),
        }

    @extend_schema_field({"type": "object", "example": {"filter": {"segment": ["hot"], "tags": [3]}}})
    def get_audience(self, broadcast) -> dict:
        audience = broadcast.audience or {}
        if "leadIds" in audience:
            return {"leadIds": len(audience["leadIds"])}
        return {"filter": audience.get("filter", {})}

    @extend_schema_field(TotalsSerializer)
    def get_totals(self, broadcast) -> dict:
        totals = broadcast.totals
        return {key: totals[key] for key in ("queued", "sent", "delivered", "read", "failed")}

    def get_skippedOptedOut(self, broadcast) -> int:
        return broadcast.skipped_opted_out + broadcast.totals["opted_out_at_send"]

    def get_error(self, broadcast) -> str | None:
        return broadcast.error or None

    def get_createdByName(self, broadcast) -> str | None:
        user = broadcast.created_by
        return (user.name or user.email) if user else None
