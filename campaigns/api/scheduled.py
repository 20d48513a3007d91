"""HeyDoc's scheduled-message routes, as its document shows them:

    GET    /api/scheduled-messages               bare array
    POST   /api/scheduled-messages               {success, message, data}
    GET    /api/scheduled-messages/pending       bare array (routed before /{id})
    GET    /api/scheduled-messages/{id}          bare object
    DELETE /api/scheduled-messages/{id}          {success, message}
    PUT    /api/scheduled-messages/{id}/status   {success, message, data}

Session cookie (with X-CSRFToken on unsafe methods) or bearer token, like every
HeyDoc route; errors in the envelope. Views parse, authorize (the selectors scope),
call one service or selector, serialize."""

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns.api import scheduled_serializers as s
from campaigns.selectors import scheduled as selectors
from campaigns.services import scheduled as services
from heroshhi.api import ErrorEnvelopeSerializer, PageLimitPagination, api_path, error_responses
from messaging.api.serializers import template_ref

TAGS = ["HeyDoc"]
DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
BOUND = (
    f"`limit` (default {DEFAULT_LIMIT}, at most {MAX_LIMIT}) and `page` bound it; the total is in the "
    "`X-Total-Count` header. Admins see every scheduled message of the account, agents the ones they created."
)
LIMIT_PARAMETERS = [
    OpenApiParameter("limit", int, required=False, description=f"Default {DEFAULT_LIMIT}, at most {MAX_LIMIT}."),
    OpenApiParameter("page", int, required=False, description="From 1."),
]
ID_PARAMETER = OpenApiParameter(
    "message_id", int, OpenApiParameter.PATH, description="The scheduled message's id (an integer)."
)


def _validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _bounded_array(request, view, scheduled) -> Response:
    """HeyDoc's bare array, bounded like GET /api/contacts."""
    paginator = PageLimitPagination()
    paginator.page_size, paginator.max_page_size = DEFAULT_LIMIT, MAX_LIMIT
    page = paginator.paginate_queryset(scheduled, request, view=view)
    response = Response(s.ScheduledMessageSerializer(page, many=True).data)
    response["X-Total-Count"] = str(paginator.total)
    return response


def _detail(scheduled) -> dict:
    context = {
        "delivery": selectors.scheduled_message_delivery(scheduled_message=scheduled),
        "next_id": selectors.scheduled_message_next_id(scheduled_message=scheduled),
    }
    return s.ScheduledMessageDetailSerializer(scheduled, context=context).data


def _answer(name: str, status_code: int = 200, *, data=None) -> dict:
    fields = {"success": drf_serializers.BooleanField(), "message": drf_serializers.CharField()}
    if data is not None:
        fields["data"] = data
    return {status_code: inline_serializer(name, fields)}


class ScheduledMessageListView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="All scheduled messages (HeyDoc)",
        operation_id="scheduled_messages_list",
        description="A bare array of `{id, message, recipients, scheduled_time, status, created_by, recurrence}`, "
        "latest `scheduled_time` first. `recipients` are digits with the country code, `scheduled_time` is UTC "
        "(`…Z`), `created_by` the creator's email. `status` filters (pending/sent/failed/cancelled). " + BOUND,
        parameters=[s.ScheduledMessageListQuerySerializer, *LIMIT_PARAMETERS],
        responses={200: s.ScheduledMessageSerializer(many=True), **error_responses(400, 401, 429)},
    )
    def get(self, request):
        query = _validated(s.ScheduledMessageListQuerySerializer, request.query_params)
        scheduled = selectors.scheduled_message_list(user=request.user, status=query.get("status"))
        return _bounded_array(request, self, scheduled)

    @extend_schema(
        tags=TAGS,
        summary="Schedule a new message (HeyDoc)",
        operation_id="scheduled_messages_create",
        description=(
            'Answers 201 `{success: true, message: "Scheduled message created successfully", data: {…}}` (`data`, '
            "the scheduled message as GET /{id} shows it, is a Heroshhi addition). It goes out within a minute of "
            "`scheduled_time`, once, to each recipient: a phone the workspace doesn't know becomes a lead (source "
            "`api`). Opted-out contacts never get it; a text reaches only contacts who wrote in the last 24 hours "
            "(WhatsApp's rule) — others are skipped and counted, so send a `template` (a Heroshhi extension: "
            "`{name, language?, params?}`, approved) to reach everyone. `scheduled_time` without an offset is read "
            "in the account's time zone; recurring messages keep that wall-clock time across DST changes (monthly "
            "on the 31st goes out on shorter months' last day). An agent can't schedule for a colleague's contact. "
            "Nothing is stored when anything is invalid (`VALIDATION_ERROR` naming the field, e.g. every invalid "
            "phone)."
        ),
        request=s.ScheduledMessageCreateSerializer,
        examples=[
            OpenApiExample(
                "HeyDoc",
                value={
                    "message": "Good morning!",
                    "recipients": ["1234567890"],
                    "scheduled_time": "2024-01-16T09:00:00Z",
                    "recurrence": "daily",
                },
                request_only=True,
            )
        ],
        responses={
            **_answer("ScheduledMessageCreated", 201, data=s.ScheduledMessageDetailSerializer()),
            400: OpenApiResponse(
                ErrorEnvelopeSerializer,
                description="`VALIDATION_ERROR`, `INVALID_JSON`, `TEMPLATE_NOT_APPROVED`.",
            ),
            **error_responses(401, 403, 413, 429),
        },
    )
    def post(self, request):
        data = _validated(s.ScheduledMessageCreateSerializer, request.data)
        scheduled = services.scheduled_message_create(
            user=request.user,
            message=data.get("message", ""),
            template=template_ref(data),
            recipients=data["recipients"],
            scheduled_time=data["scheduled_time"],
            recurrence=data["recurrence"],
        )
        return Response(
            {"success": True, "message": "Scheduled message created successfully", "data": _detail(scheduled)},
            status=status.HTTP_201_CREATED,
        )


class ScheduledMessagePendingView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Pending scheduled messages (HeyDoc)",
        operation_id="scheduled_messages_pending",
        description="A bare array like GET /api/scheduled-messages, only `pending` ones, next due first. "
        "Heroshhi sends them itself; this list is for showing what is coming. " + BOUND,
        parameters=LIMIT_PARAMETERS,
        responses={200: s.ScheduledMessageSerializer(many=True), **error_responses(400, 401, 429)},
    )
    def get(self, request):
        return _bounded_array(request, self, selectors.scheduled_message_pending(user=request.user))


class ScheduledMessageDetailView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Get a scheduled message (HeyDoc)",
        operation_id="scheduled_messages_get",
        description="The bare object of the list, plus what happened (Heroshhi extensions): `template`, `error`, "
        "`queued`, `skipped_opted_out`, `skipped_window_closed`, `skipped_invalid`, `delivery` (its messages per "
        "status), `sent_at`, `created_at`, `previous_id`, `next_id` (a recurring series' next occurrence). "
        "Another account's id, or for an agent a colleague's, is 404.",
        parameters=[ID_PARAMETER],
        responses={200: s.ScheduledMessageDetailSerializer(), **error_responses(401, 404, 429)},
    )
    def get(self, request, message_id: str):
        return Response(_detail(selectors.scheduled_message_get(user=request.user, ref=message_id)))

    @extend_schema(
        tags=TAGS,
        summary="Delete a scheduled message (HeyDoc)",
        operation_id="scheduled_messages_delete",
        description="A pending one never goes out (nor does its series continue). Deleting one that was sent "
        "removes the record; its messages stay in the conversations.",
        parameters=[ID_PARAMETER],
        responses={**_answer("ScheduledMessageDeleted"), **error_responses(401, 403, 404, 429)},
    )
    def delete(self, request, message_id: str):
        scheduled = selectors.scheduled_message_get(user=request.user, ref=message_id)
        services.scheduled_message_delete(scheduled_message=scheduled)
        return Response({"success": True, "message": "Scheduled message deleted successfully"})


class ScheduledMessageStatusView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Update a scheduled message's status (HeyDoc)",
        operation_id="scheduled_messages_status_update",
        description=(
            "`pending → cancelled`: it won't go out (a recurring series stops). `cancelled → pending`: back on, "
            "only while `scheduled_time` is still ahead. `pending → sent` or `failed`: closed by hand — Heroshhi "
            "sends nothing for it (a recurring series goes on with its next occurrence). `sent` and `failed` are "
            "final. The same status again changes nothing. A refused change is 400 `INVALID_STATUS_TRANSITION`; "
            "an unknown status is a `VALIDATION_ERROR`."
        ),
        parameters=[ID_PARAMETER],
        request=s.ScheduledMessageStatusSerializer,
        examples=[OpenApiExample("HeyDoc", value={"status": "sent"}, request_only=True)],
        responses={
            **_answer("ScheduledMessageStatusUpdated", data=s.ScheduledMessageDetailSerializer()),
            400: OpenApiResponse(
                ErrorEnvelopeSerializer, description="`INVALID_STATUS_TRANSITION`, `VALIDATION_ERROR`, `INVALID_JSON`."
            ),
            **error_responses(401, 403, 404, 429),
        },
    )
    def put(self, request, message_id: str):
        scheduled = selectors.scheduled_message_get(user=request.user, ref=message_id)
        data = _validated(s.ScheduledMessageStatusSerializer, request.data)
        scheduled = services.scheduled_message_status_set(scheduled_message=scheduled, status=data["status"])
        return Response({"success": True, "message": "Status updated successfully", "data": _detail(scheduled)})


urlpatterns = [
    *api_path("scheduled-messages", ScheduledMessageListView.as_view(), "api-scheduled-messages"),
    # Before /{id}: "pending" is not an id.
    *api_path("scheduled-messages/pending", ScheduledMessagePendingView.as_view(), "api-scheduled-messages-pending"),
    *api_path("scheduled-messages/<str:message_id>", ScheduledMessageDetailView.as_view(), "api-scheduled-message"),
    *api_path(
        "scheduled-messages/<str:message_id>/status",
        ScheduledMessageStatusView.as_view(),
        "api-scheduled-message-status",
    ),
]
