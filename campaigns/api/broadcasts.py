"""Broadcast routes (the Heroshhi document's "Drip & Broadcast Routes" and their
companions):

    POST /api/broadcasts                 create and send (or schedule, or save a draft)
    GET  /api/broadcasts                 list, newest first, ?status=&page=&limit=
    GET  /api/broadcasts/audience        how many leads an audience reaches (query parameters)
    POST /api/broadcasts/audience        the same with the create body's leadIds / filter
    GET  /api/broadcasts/:id             details with live counts
    POST /api/broadcasts/:id/send        send a draft now or at scheduledAt
    POST /api/broadcasts/:id/cancel      cancel (queued messages are dropped)

Admins see and manage every broadcast of the account; agents their own, sent to the
leads they may see. Another account's broadcast answers 404. Views parse, authorize
(the selectors scope), call one service or selector, serialize."""

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns.api import broadcast_serializers as s
from campaigns.selectors import broadcasts as selectors
from campaigns.services import broadcasts as services
from heroshhi.api import PageLimitPagination, api_path, error_responses
from messaging.api.serializers import template_ref

TAGS = ["broadcasts"]
ID_PARAMETER = OpenApiParameter("broadcast_id", str, OpenApiParameter.PATH, description="The broadcast's id (UUID).")
ROLES = (
    "Admins see and manage every broadcast of the account; agents see and manage the broadcasts they created, "
    "which reach only leads assigned to them or to nobody. Another account's broadcast answers 404."
)
STATUS_TEXT = (
    "`status`: `draft` (saved, not sent), `scheduled` (waits for `scheduledAt`), `sending` (its messages are "
    "queued and go out at the number's throughput), `completed` (no message left queued), `cancelled`, "
    "`failed` (nothing could be sent: `error` says why, e.g. the template is no longer approved or no lead "
    "matched when it started)."
)


def _validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _answer(name: str, status_code: int = 200, *, message: bool = True, data=None) -> dict:
    fields = {"success": drf_serializers.BooleanField()}
    if message:
        fields["message"] = drf_serializers.CharField()
    fields["data"] = data if data is not None else s.BroadcastOutputSerializer()
    return {status_code: inline_serializer(name, fields)}


def _detail(broadcast, *, fresh: bool = False) -> dict:
    """The broadcast's answer; ``fresh``: recount after a write changed its messages."""
    if fresh or not hasattr(broadcast, "totals"):
        broadcast.totals = selectors.broadcast_totals(broadcast_ids=[broadcast.pk])[broadcast.pk]
    return s.BroadcastOutputSerializer(broadcast).data


CREATE_EXAMPLE = OpenApiExample(
    "Template to a filter",
    value={
        "name": "March offer",
        "template": {"name": "special_offer", "language": "en_US", "params": ["{{first_name}}"]},
        "filter": {"segment": ["hot", "warm"], "tags": ["VIP", 4], "status": "qualified"},
        "scheduledAt": "2026-03-01T09:30:00+05:30",
    },
    request_only=True,
)
TEXT_EXAMPLE = OpenApiExample(
    "Text to lead ids, now",
    value={"message": "Hi {{name}}, our showroom opens at 10 tomorrow.", "leadIds": ["8f0c…", "1b2d…"]},
    request_only=True,
)


class BroadcastListCreateView(APIView):
    pagination_class = PageLimitPagination

    @extend_schema(
        tags=TAGS,
        summary="List broadcasts",
        operation_id="broadcasts_list",
        description="Newest first, with each broadcast's live counts. " + ROLES,
        parameters=[s.BroadcastListQuerySerializer],
        responses={200: s.BroadcastOutputSerializer(many=True), **error_responses(400, 401, 429)},
    )
    def get(self, request):
        query = _validated(s.BroadcastListQuerySerializer, request.query_params)
        broadcasts = selectors.broadcast_list(user=request.user, status=query.get("status"))
        paginator = PageLimitPagination()
        page = selectors.broadcasts_with_totals(paginator.paginate_queryset(broadcasts, request, view=self))
        return paginator.get_paginated_response(s.BroadcastOutputSerializer(page, many=True).data)

    @extend_schema(
        tags=TAGS,
        summary="Create and send broadcast",
        operation_id="broadcasts_create",
        description="Creates the broadcast and, unless it is a `draft` or `scheduledAt` is ahead, snapshots its "
        "audience into queued messages before answering; the worker sends them at the number's throughput. "
        "The audience is `leadIds` (every one must be a lead you can see) or a `filter` (evaluated when the "
        "broadcast starts). Opted-out leads are skipped and counted, at the snapshot and again right before "
        "each send. Per-lead variables in `message` and template `params`: {{name}}, {{first_name}}, "
        "{{phone}}, {{email}}, {{source}}, {{status}}, {{segment}}, {{inquiry}}, {{assigned_to}}; an unknown "
        "one is a VALIDATION_ERROR. A lead for whom a template parameter renders empty is skipped "
        "(`skippedInvalid`). An audience with no lead that can be messaged is a VALIDATION_ERROR and nothing is "
        "created. " + STATUS_TEXT + " " + ROLES,
        request=s.BroadcastCreateSerializer,
        examples=[CREATE_EXAMPLE, TEXT_EXAMPLE],
        responses={**_answer("BroadcastCreated", 201), **error_responses(400, 401, 413, 429)},
    )
    def post(self, request):
        data = _validated(s.BroadcastCreateSerializer, request.data)
        broadcast = services.broadcast_create(
            user=request.user,
            name=data.get("name", ""),
            text=data.get("message", ""),
            template=template_ref(data),
            lead_ids=data.get("leadIds"),
            filters=data.get("filter"),
            scheduled_at=data.get("scheduledAt"),
            draft=data.get("draft", False),
        )
        messages = {
            "draft": "Broadcast saved as a draft.",
            "scheduled": "Broadcast scheduled.",
            "sending": f"Broadcast started: {broadcast.recipients} message(s) queued.",
        }
        text = messages.get(broadcast.status, f"Broadcast {broadcast.status}.")
        return Response({"success": True, "message": text, "data": _detail(broadcast)}, status=status.HTTP_201_CREATED)


class BroadcastAudienceView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Count an audience (query parameters)",
        operation_id="broadcasts_audience_count",
        description="What a broadcast to this filter would reach now, creating nothing: `matched`, `recipients` "
        "(not opted out), `optedOut`, `windowClosed`. `status`, `segment` and `tags` take comma-separated lists "
        "(any of); `assignedTo` a user id, `me` or `unassigned`. Only leads you can see are counted.",
        parameters=[s.AudienceQuerySerializer],
        responses={
            **_answer("AudienceCount", message=False, data=s.AudienceCountsSerializer()),
            **error_responses(400, 401, 429),
        },
    )
    def get(self, request):
        query = s.AudienceQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = _validated(s.AudienceFilterSerializer, query.to_filter())
        return self._count(request, lead_ids=None, filters=filters)

    @extend_schema(
        tags=TAGS,
        summary="Count an audience (body)",
        operation_id="broadcasts_audience_count_body",
        description="As the GET, with the create body's `leadIds` or `filter`.",
        request=s.AudienceSerializer,
        responses={
            **_answer("AudienceCountBody", message=False, data=s.AudienceCountsSerializer()),
            **error_responses(400, 401, 429),
        },
    )
    def post(self, request):
        data = _validated(s.AudienceSerializer, request.data)
        return self._count(request, lead_ids=data.get("leadIds"), filters=data.get("filter"))

    def _count(self, request, *, lead_ids, filters) -> Response:
        audience = selectors.audience_normalize(user=request.user, lead_ids=lead_ids, filters=filters)
        counts = selectors.audience_counts(user=request.user, audience=audience)
        return Response({"success": True, "data": counts})


class BroadcastDetailView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Get broadcast details",
        operation_id="broadcasts_get",
        description="The broadcast with live counts: `totals` of its messages by current status (queued, sent, "
        "delivered, read, failed), `recipients` (messages created), `skippedOptedOut` (opted out at the "
        "snapshot or before their message went; not counted as failed), `skippedInvalid`, "
        "`skippedWindowClosed`, `cancelledUnsent`, `startedAt`, `finishedAt`. " + STATUS_TEXT + " " + ROLES,
        parameters=[ID_PARAMETER],
        responses={**_answer("BroadcastDetail", message=False), **error_responses(401, 404, 429)},
    )
    def get(self, request, broadcast_id: str):
        broadcast = selectors.broadcast_get(user=request.user, broadcast_id=broadcast_id)
        return Response({"success": True, "data": _detail(broadcast)})


class BroadcastSendView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Send a draft",
        operation_id="broadcasts_send",
        description="Sends a draft now, or schedules it for `scheduledAt` (else the time saved with the draft when "
        "it is still ahead). Content and audience are checked again. Anything but a draft answers "
        "`INVALID_BROADCAST_STATE`. " + ROLES,
        parameters=[ID_PARAMETER],
        request=s.BroadcastSendSerializer,
        responses={**_answer("BroadcastSent"), **error_responses(400, 401, 404, 429)},
    )
    def post(self, request, broadcast_id: str):
        broadcast = selectors.broadcast_get(user=request.user, broadcast_id=broadcast_id)
        data = _validated(s.BroadcastSendSerializer, request.data)
        broadcast = services.broadcast_send(broadcast=broadcast, scheduled_at=data.get("scheduledAt"))
        text = "Broadcast scheduled." if broadcast.status == "scheduled" else f"Broadcast {broadcast.status}."
        return Response({"success": True, "message": text, "data": _detail(broadcast, fresh=True)})


class BroadcastCancelView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Cancel a broadcast",
        operation_id="broadcasts_cancel",
        description="A draft or scheduled broadcast never starts. Of a sending one, the queued messages no worker "
        "holds are dropped (`cancelledUnsent`); the few being sent at that moment finish. Cancelling a cancelled "
        "broadcast answers it unchanged; a completed or failed one answers `INVALID_BROADCAST_STATE`. " + ROLES,
        parameters=[ID_PARAMETER],
        request=None,
        responses={**_answer("BroadcastCancelled"), **error_responses(400, 401, 404, 429)},
    )
    def post(self, request, broadcast_id: str):
        broadcast = selectors.broadcast_get(user=request.user, broadcast_id=broadcast_id)
        broadcast = services.broadcast_cancel(broadcast=broadcast)
        return Response({"success": True, "message": "Broadcast cancelled.", "data": _detail(broadcast, fresh=True)})


urlpatterns = [
    *api_path("broadcasts", BroadcastListCreateView.as_view(), "api-broadcasts"),
    # Before /broadcasts/<id>, which takes any other segment.
    *api_path("broadcasts/audience", BroadcastAudienceView.as_view(), "api-broadcasts-audience"),
    *api_path("broadcasts/<str:broadcast_id>", BroadcastDetailView.as_view(), "api-broadcast"),
    *api_path("broadcasts/<str:broadcast_id>/send", BroadcastSendView.as_view(), "api-broadcast-send"),
    *api_path("broadcasts/<str:broadcast_id>/cancel", BroadcastCancelView.as_view(), "api-broadcast-cancel"),
]
