"""Shapes of the drip API, camelCase as the Heroshhi document. Input serializers check
types and enums; the rules (step count, template approval, the send window, tenancy)
live in campaigns.services.drips, whose field errors are renamed here to the API's
field names."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from campaigns.models import Drip, DripStep, Enrollment
from campaigns.services import drips as service
from leads.phones import display_phone
from messaging.api.serializers import TemplateInputSerializer

HH_MM = r"^([01]\d|2[0-3]):[0-5]\d$"


class DripDelaySerializer(serializers.Serializer):
    amount = serializers.IntegerField(min_value=0, max_value=service.MAX_DELAY_AMOUNT)
    unit = serializers.ChoiceField(choices=DripStep.DelayUnit.choices)


class DripStepInputSerializer(serializers.Serializer):
    delay = DripDelaySerializer(help_text="After the previous step, or after the enrollment for the first step.")
    message = serializers.CharField(
        max_length=service.MAX_TEXT,
        required=False,
        help_text="Free-form text; per-lead variables such as {{name}}. Sent only inside the lead's 24-hour "
        "window: outside it the step is skipped.",
    )
    template = TemplateInputSerializer(required=False, help_text="An approved template; `params` may hold {{name}}.")

    def validate(self, attrs):
        if ("message" in attrs) == ("template" in attrs):
            raise serializers.ValidationError({"message": ["Give either `message` or `template`."]})
        return attrs


class DripSendWindowSerializer(serializers.Serializer):
    start = serializers.RegexField(HH_MM, help_text="HH:MM, the account's time zone.")
    end = serializers.RegexField(HH_MM, help_text="HH:MM; before `start` for a window over midnight.")


class DripInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=service.MAX_NAME)
    # Defaults apply to POST and PUT (a PUT sets every field); PATCH changes what it names.
    description = serializers.CharField(max_length=service.MAX_DESCRIPTION, allow_blank=True, default="")
    isActive = serializers.BooleanField(default=True, help_text="Inactive: paused (nothing sent, no enrollments).")
    stopOnReply = serializers.BooleanField(default=True, help_text="Stop a lead's enrollment when the lead writes.")
    stopOnConversion = serializers.BooleanField(
        default=True, help_text="Stop when the lead is converted; converted leads are not enrolled."
    )
    sendWindow = DripSendWindowSerializer(
        allow_null=True, default=None, help_text="Daily window for sends in the account's time zone; null: any time."
    )
    steps = serializers.ListField(
        child=DripStepInputSerializer(),
        min_length=1,
        max_length=service.MAX_STEPS,
        help_text=f"1 to {service.MAX_STEPS} steps, in order. On update they replace the drip's steps as a whole.",
    )


def to_service_data(data: dict) -> dict:
    """Validated API input → the service's field names."""
    names = {
        "name": "name",
        "description": "description",
        "isActive": "is_active",
        "stopOnReply": "stop_on_reply",
        "stopOnConversion": "stop_on_conversion",
    }
    out = {names[key]: value for key, value in data.items() if key in names}
    if "sendWindow" in data:
        window = data["sendWindow"] or {}
        out["send_window_start"] = window.get("start")
        out["send_window_end"] = window.get("end")
    if "steps" in data:
        out["steps"] = [
            {
                "delay_amount": step["delay"]["amount"],
                "delay_unit": step["delay"]["unit"],
                "text": step.get("message", ""),
                "template_name": (step.get("template") or {}).get("name", ""),
                "template_language": (step.get("template") or {}).get("language", ""),
                "template_params": (step.get("template") or {}).get("params", []),
            }
            for step in data["steps"]
        ]
    return out


_FIELD_PATHS = {
    "name": ["name"],
    "description": ["description"],
    "is_active": ["isActive"],
    "stop_on_reply": ["stopOnReply"],
    "stop_on_conversion": ["stopOnConversion"],
    "send_window_start": ["sendWindow", "start"],
    "send_window_end": ["sendWindow", "end"],
    "steps": ["steps"],
}
_STEP_PATHS = {
    "delay_amount": ["delay", "amount"],
    "delay_unit": ["delay", "unit"],
    "text": ["message"],
    "template_name": ["template", "name"],
    "template_language": ["template", "language"],
    "template_params": ["template", "params"],
}


def api_errors(errors: dict) -> dict:
    """The service's flat field errors (``steps.2.template_name``) nested under the
    API's names, as DRF nests its own: ``{"steps": {"2": {"template": {"name": […]}}}}``."""
    nested: dict = {}
    for key, messages in errors.items():
        parts = key.split(".")
        if parts[0] == "steps" and len(parts) > 1:
            path = ["steps", parts[1], *(_STEP_PATHS.get(parts[2], parts[2:]) if len(parts) > 2 else [])]
        else:
            path = _FIELD_PATHS.get(parts[0], parts)
        node = nested
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):  # never with the service's keys; keep the message anyway
                node = nested.setdefault(".".join(path[:-1]), {})
                break
        node.setdefault(path[-1], []).extend(messages)
    return nested


# --- Output -----------------------------------------------------------------------------


class DripDelayOutputSerializer(serializers.Serializer):
    amount = serializers.IntegerField()
    unit = serializers.ChoiceField(choices=DripStep.DelayUnit.choices)


class DripStepTemplateOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    language = serializers.CharField()
    params = serializers.ListField(child=serializers.CharField())


class DripStepOutputSerializer(serializers.ModelSerializer):
    delay = serializers.SerializerMethodField()
    type = serializers.SerializerMethodField()
    message = serializers.SerializerMethodField(help_text="The text of a text step; null for a template step.")
    template = serializers.SerializerMethodField()

    class Meta:
        model = DripStep
        fields = ["position", "delay", "type", "message", "template"]

    @extend_schema_field(DripDelayOutputSerializer)
    def get_delay(self, step) -> dict:
        return {"amount": step.delay_amount, "unit": step.delay_unit}

    @extend_schema_field(serializers.ChoiceField(choices=["text", "template"]))
    def get_type(self, step) -> str:
        return "template" if step.template_name else "text"

    def get_message(self, step) -> str | None:
        return step.text or None

    @extend_schema_field(DripStepTemplateOutputSerializer(allow_null=True))
    def get_template(self, step) -> dict | None:
        if not step.template_name:
            return None
        return {"name": step.template_name, "language": step.template_language, "params": step.template_params}


class DripSendWindowOutputSerializer(serializers.Serializer):
    start = serializers.CharField(help_text="HH:MM")
    end = serializers.CharField(help_text="HH:MM")
    timeZone = serializers.CharField(help_text="The account's time zone.")


class DripEnrollmentCountsSerializer(serializers.Serializer):
    active = serializers.IntegerField()
    completed = serializers.IntegerField()
    stopped = serializers.IntegerField()
    total = serializers.IntegerField()


class DripOutputSerializer(serializers.ModelSerializer):
    isActive = serializers.BooleanField(source="is_active")
    stopOnReply = serializers.BooleanField(source="stop_on_reply")
    stopOnConversion = serializers.BooleanField(source="stop_on_conversion")
    sendWindow = serializers.SerializerMethodField()
    steps = DripStepOutputSerializer(many=True)
    enrollments = serializers.SerializerMethodField(help_text="Enrollments per status, whoever enrolled the leads.")
    createdBy = serializers.UUIDField(source="created_by_id", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        model = Drip
        fields = [
            "id",
            "name",
            "description",
            "isActive",
            "stopOnReply",
            "stopOnConversion",
            "sendWindow",
            "steps",
            "enrollments",
            "createdBy",
            "createdAt",
            "updatedAt",
        ]

    @extend_schema_field(DripSendWindowOutputSerializer(allow_null=True))
    def get_sendWindow(self, drip) -> dict | None:
        if drip.send_window_start is None or drip.send_window_end is None:
            return None
        return {
            "start": drip.send_window_start.strftime("%H:%M"),
            "end": drip.send_window_end.strftime("%H:%M"),
            "timeZone": self.context["time_zone"],
        }

    @extend_schema_field(DripEnrollmentCountsSerializer)
    def get_enrollments(self, drip) -> dict:
        counts = dict(self.context["counts"].get(drip.pk, {}))
        counts = {status: counts.get(status, 0) for status in Enrollment.Status.values}
        return {**counts, "total": sum(counts.values())}


class _BlankAsNull(serializers.CharField):
    def to_representation(self, value):
        return value or None


class DripEnrollmentOutputSerializer(serializers.ModelSerializer):
    dripId = serializers.UUIDField(source="drip_id")
    leadId = serializers.UUIDField(source="lead_id")
    leadName = serializers.CharField(source="lead.name")
    leadPhone = serializers.SerializerMethodField()
    stopReason = _BlankAsNull(
        source="stop_reason",
        allow_null=True,
        help_text="opted_out, replied, converted or cancelled; null unless stopped.",
    )
    nextStep = serializers.IntegerField(source="next_step", help_text="Position (from 0) of the next step to send.")
    nextDueAt = serializers.DateTimeField(source="next_due_at", allow_null=True)
    stepsSent = serializers.IntegerField(source="steps_sent")
    stepsSkipped = serializers.IntegerField(
        source="steps_skipped", help_text="Text steps outside the 24-hour window, templates no longer approved."
    )
    lastError = _BlankAsNull(source="last_error", allow_null=True, help_text="Why the latest step was skipped.")
    enrolledBy = serializers.UUIDField(source="enrolled_by_id", allow_null=True)
    enrolledAt = serializers.DateTimeField(source="enrolled_at")
    finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)

    class Meta:
        model = Enrollment
        fields = [
            "id",
            "dripId",
            "leadId",
            "leadName",
            "leadPhone",
            "status",
            "stopReason",
            "nextStep",
            "nextDueAt",
            "stepsSent",
            "stepsSkipped",
            "lastError",
            "enrolledBy",
            "enrolledAt",
            "finishedAt",
        ]

    def get_leadPhone(self, enrollment) -> str:
        return display_phone(enrollment.lead.phone)


class _UUIDString(serializers.UUIDField):
    """A UUID written as a string (DRF's field would also read integers as UUIDs)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class DripEnrollInputSerializer(serializers.Serializer):
    leadIds = serializers.ListField(
        child=_UUIDString(), allow_empty=False, max_length=service.MAX_ENROLL, help_text="Lead ids."
    )


class DripEnrollResultSerializer(serializers.Serializer):
    requested = serializers.IntegerField(help_text="Distinct ids given.")
    enrolled = serializers.IntegerField(help_text="New enrollments.")
    already = serializers.IntegerField(help_text="Leads already active in this drip: nothing happened to them.")
    skipped_opted_out = serializers.IntegerField(help_text="Opted-out leads: not enrolled.")
    skipped_converted = serializers.IntegerField(
        help_text="Converted leads, when the drip stops on conversion: not enrolled."
    )
    invalid = serializers.IntegerField(help_text="Ids naming no lead you can see: not enrolled.")


class DripEnrollmentFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Enrollment.Status.choices, required=False)
