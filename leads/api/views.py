"""Lead routes of the Heroshhi document (/api/leads…), the lead-ingestion webhook,
tags, and HeyDoc's contacts. Views parse, call one service or selector, serialize."""

import hmac
import zoneinfo
from datetime import date, timedelta

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Account
from heroshhi.api import PageLimitPagination, SuccessSerializer, error_responses
from heroshhi.errors import DomainError, NotFound, ValidationFailed
from heroshhi.ratelimit import WebhookRateThrottle
from leads import selectors, services
from leads.api import serializers as s

ENGAGEMENTS_ON_LEAD = 50
ANALYTICS_EARLIEST, ANALYTICS_LATEST = date(1900, 1, 1), date(2999, 12, 31)


def _validated(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _one(name: str, serializer, status_code: int = 200):
    return {status_code: inline_serializer(name, {"success": drf_serializers.BooleanField(), "data": serializer})}


def _lead_detail(lead) -> dict:
    engagements = list(selectors.engagement_list(lead=lead)[:ENGAGEMENTS_ON_LEAD])
    return s.LeadDetailOutputSerializer(lead, context={"engagements": engagements}).data


class LeadListCreateView(APIView):
    @extend_schema(
        tags=["leads"],
        summary="List leads with filters and pagination",
        operation_id="leads_list",
        parameters=[s.LeadFilterSerializer],
        responses={200: s.LeadOutputSerializer(many=True), **error_responses(400, 401, 429)},
    )
    def get(self, request):
        query = _validated(s.LeadFilterSerializer, request.query_params)
        filters = selectors.LeadFilters(
            status=query.get("status"),
            segment=query.get("segment"),
            source=query.get("source"),
            assigned_to=query.get("assignedTo"),
            tag=query.get("tag"),
            is_opted_out=query.get("isOptedOut"),
            created_from=query.get("createdFrom"),
            created_to=query.get("createdTo"),
            search=query.get("search"),
        )
        leads = selectors.lead_list(user=request.user, filters=filters)
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(leads, request, view=self)
        return paginator.get_paginated_response(s.LeadOutputSerializer(page, many=True).data)

    # The list is paginated; the schema generator reads this to say so.
    pagination_class = PageLimitPagination

    @extend_schema(
        tags=["leads"],
        summary="Create a lead",
        request=s.LeadInputSerializer,
        responses={**_one("LeadCreated", s.LeadDetailOutputSerializer(), 201), **error_responses(400, 401, 429)},
    )
    def post(self, request):
        data = _validated(s.LeadInputSerializer, request.data)
        lead = services.lead_create(user=request.user, data=s.to_model_fields(data))
        lead = selectors.lead_get(user=request.user, lead_id=lead.pk)
        return Response({"success": True, "data": _lead_detail(lead)}, status=status.HTTP_201_CREATED)


class LeadDetailView(APIView):
    @extend_schema(
        tags=["leads"],
        summary="Get a lead, with its latest engagements",
        responses={**_one("LeadDetail", s.LeadDetailOutputSerializer()), **error_responses(401, 404, 429)},
    )
    def get(self, request, lead_id):
        return Response({"success": True, "data": _lead_detail(selectors.lead_get(user=request.user, lead_id=lead_id))})

    def _update(self, request, lead_id, *, partial: bool):
        lead = selectors.lead_get(user=request.user, lead_id=lead_id)
        data = _validated(s.LeadInputSerializer, request.data, partial=partial)
        services.lead_update(user=request.user, lead=lead, data=s.to_model_fields(data))
        lead = selectors.lead_get(user=request.user, lead_id=lead.pk)
        return Response({"success": True, "data": _lead_detail(lead)})

    @extend_schema(
        tags=["leads"],
        summary="Update a lead (all fields)",
        request=s.LeadInputSerializer,
        responses={**_one("LeadUpdated", s.LeadDetailOutputSerializer()), **error_responses(400, 401, 404, 429)},
    )
    def put(self, request, lead_id):
        return self._update(request, lead_id, partial=False)

    @extend_schema(
        tags=["leads"],
        summary="Update some fields of a lead",
        request=s.LeadInputSerializer,
        responses={**_one("LeadPatched", s.LeadDetailOutputSerializer()), **error_responses(400, 401, 404, 429)},
    )
    def patch(self, request, lead_id):
        return self._update(request, lead_id, partial=True)

    @extend_schema(
        tags=["leads"],
        summary="Delete a lead (admins)",
        responses={200: SuccessSerializer, **error_responses(401, 403, 404, 429)},
    )
    def delete(self, request, lead_id):
        lead = selectors.lead_get(user=request.user, lead_id=lead_id)
        services.lead_delete(user=request.user, lead=lead)
        return Response({"success": True, "message": "Lead deleted."})


def _bulk_answer(count: int, verb: str) -> Response:
    return Response({"success": True, "message": f"{count} lead(s) {verb}.", "data": {"count": count}})


class LeadBulkUpdateView(APIView):
    @extend_schema(
        tags=["leads"],
        summary="Set fields on many leads",
        description="Every id must be a lead you can see, or nothing changes (VALIDATION_ERROR lists the others).",
        request=s.BulkUpdateInputSerializer,
        responses={200: s.BulkResultSerializer, **error_responses(400, 401, 429)},
    )
    def post(self, request):
        data = _validated(s.BulkUpdateInputSerializer, request.data)
        fields = s.to_model_fields(dict(data["updates"]))
        return _bulk_answer(services.lead_bulk_update(user=request.user, ids=data["ids"], fields=fields), "updated")


class LeadBulkAssignView(APIView):
    @extend_schema(
        tags=["leads"],
        summary="Assign many leads to a user (or unassign)",
        description="Agents may only assign to themselves or unassign.",
        request=s.BulkAssignInputSerializer,
        responses={200: s.BulkResultSerializer, **error_responses(400, 401, 429)},
    )
    def post(self, request):
        data = _validated(s.BulkAssignInputSerializer, request.data)
        count = services.lead_bulk_assign(user=request.user, ids=data["ids"], assignee_id=data["assignedTo"])
        return _bulk_answer(count, "assigned")


class LeadBulkDeleteView(APIView):
    @extend_schema(
        tags=["leads"],
        summary="Delete many leads (admins)",
        request=s.BulkIdsSerializer,
        responses={200: s.BulkResultSerializer, **error_responses(400, 401, 403, 429)},
    )
    def post(self, request):
        data = _validated(s.BulkIdsSerializer, request.data)
        return _bulk_answer(services.lead_bulk_delete(user=request.user, ids=data["ids"]), "deleted")


class LeadAnalyticsView(APIView):
    @extend_schema(
        tags=["leads"],
        summary="Lead analytics",
        description="Counts by status, segment, source and assignee; leads created per day between `from` and "
        "`to` (dates in the account's time zone, default the last 30 days); conversion rate (percent of leads "
        "converted); opted-out count; messages in and out in the range. Agents see their own leads.",
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATE, required=False),
            OpenApiParameter("to", OpenApiTypes.DATE, required=False),
        ],
        responses={200: OpenApiTypes.OBJECT, **error_responses(400, 401, 429)},
    )
    def get(self, request):
        params = {"date_from": "from", "date_to": "to"}
        given = {field: request.query_params.get(name) for field, name in params.items()}
        serializer = s.AnalyticsQuerySerializer(data={field: value for field, value in given.items() if value})
        if not serializer.is_valid():  # errors named as the client wrote them: from, to
            raise drf_serializers.ValidationError({params.get(k, k): v for k, v in serializer.errors.items()})
        query = serializer.validated_data
        for field, name in params.items():
            # Far-off dates overflow when turned into the account's day boundaries.
            if query.get(field) and not ANALYTICS_EARLIEST <= query[field] <= ANALYTICS_LATEST:
                message = f"Use a date between {ANALYTICS_EARLIEST} and {ANALYTICS_LATEST}."
                raise ValidationFailed(f"{name}: {message}", errors={name: [message]})
        today = timezone.now().astimezone(zoneinfo.ZoneInfo(request.user.account.time_zone)).date()
        date_to = query.get("date_to") or today
        date_from = query.get("date_from") or date_to - timedelta(days=29)
        if date_from > date_to:  # `from` alone, after today
            raise ValidationFailed("from: Must not be after `to`.", errors={"from": ["Must not be after `to`."]})
        if (date_to - date_from).days > 366:
            date_from = date_to - timedelta(days=366)
        data = selectors.lead_analytics(user=request.user, date_from=date_from, date_to=date_to)
        return Response({"success": True, "data": data})


class LeadEngagementView(APIView):
    pagination_class = PageLimitPagination

    @extend_schema(
        tags=["leads"],
        summary="The lead's engagements, newest first",
        operation_id="lead_engagements_list",
        responses={200: s.EngagementOutputSerializer(many=True), **error_responses(400, 401, 404, 429)},
    )
    def get(self, request, lead_id):
        lead = selectors.lead_get(user=request.user, lead_id=lead_id)
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(selectors.engagement_list(lead=lead), request, view=self)
        return paginator.get_paginated_response(s.EngagementOutputSerializer(page, many=True).data)

    @extend_schema(
        tags=["leads"],
        summary="Log a call, email, meeting, note or WhatsApp activity",
        request=s.EngagementInputSerializer,
        responses={
            **_one("EngagementLogged", s.EngagementOutputSerializer(), 201),
            **error_responses(400, 401, 404, 429),
        },
    )
    def post(self, request, lead_id):
        lead = selectors.lead_get(user=request.user, lead_id=lead_id)
        data = _validated(s.EngagementInputSerializer, request.data)
        engagement = services.engagement_log(lead=lead, user=request.user, **data)
        return Response(
            {"success": True, "data": s.EngagementOutputSerializer(engagement).data}, status=status.HTTP_201_CREATED
        )


class LeadTagsView(APIView):
    @extend_schema(
        tags=["tags"],
        summary="Add tags to a lead (by id or name; new names are created)",
        request=s.LeadTagsInputSerializer,
        responses={**_one("LeadTags", s.TagOutputSerializer(many=True)), **error_responses(400, 401, 404, 429)},
    )
    def post(self, request, lead_id):
        lead = selectors.lead_get(user=request.user, lead_id=lead_id)
        data = _validated(
            type(
                "LeadTagsInput",
                (drf_serializers.Serializer,),
                {"tags": drf_serializers.ListField(child=s.TagRefField(), allow_empty=False, max_length=50)},
            ),
            request.data,
        )
        services.lead_add_tags(lead=lead, values=data["tags"])
        return Response({"success": True, "data": s.TagOutputSerializer(lead.tags.order_by("name"), many=True).data})


class LeadTagDetailView(APIView):
    @extend_schema(
        tags=["tags"],
        summary="Remove a tag from a lead",
        responses={200: SuccessSerializer, **error_responses(401, 404, 429)},
    )
    def delete(self, request, lead_id, tag_id):
        lead = selectors.lead_get(user=request.user, lead_id=lead_id)
        tag = selectors.tag_get(account_id=request.user.account_id, tag_id=tag_id)
        services.lead_remove_tag(lead=lead, tag=tag)
        return Response({"success": True, "message": "Tag removed from the lead."})


class TagListCreateView(APIView):
    @extend_schema(
        tags=["tags"],
        summary="The account's tags with their lead counts",
        operation_id="tags_list",
        responses={**_one("TagList", s.TagWithCountOutputSerializer(many=True)), **error_responses(401, 429)},
    )
    def get(self, request):
        tags = selectors.tag_list(user=request.user)
        return Response({"success": True, "data": s.TagWithCountOutputSerializer(tags, many=True).data})

    @extend_schema(
        tags=["tags"],
        summary="Create a tag",
        request=s.TagInputSerializer,
        responses={**_one("TagCreated", s.TagOutputSerializer(), 201), **error_responses(400, 401, 429)},
    )
    def post(self, request):
        data = _validated(s.TagInputSerializer, request.data)
        tag = services.tag_create(account_id=request.user.account_id, **data)
        return Response({"success": True, "data": s.TagOutputSerializer(tag).data}, status=status.HTTP_201_CREATED)


class TagDetailView(APIView):
    def _tag(self, request, tag_id):
        return selectors.tag_get(account_id=request.user.account_id, tag_id=tag_id)

    @extend_schema(
        tags=["tags"],
        summary="Get a tag",
        responses={**_one("TagDetail", s.TagOutputSerializer()), **error_responses(401, 404, 429)},
    )
    def get(self, request, tag_id):
        return Response({"success": True, "data": s.TagOutputSerializer(self._tag(request, tag_id)).data})

    def _update(self, request, tag_id, *, partial):
        tag = self._tag(request, tag_id)
        data = _validated(s.TagInputSerializer, request.data, partial=partial)
        tag = services.tag_update(tag=tag, name=data.get("name"), color=data.get("color"))
        return Response({"success": True, "data": s.TagOutputSerializer(tag).data})

    @extend_schema(
        tags=["tags"],
        summary="Rename or recolour a tag",
        request=s.TagInputSerializer,
        responses={**_one("TagUpdated", s.TagOutputSerializer()), **error_responses(400, 401, 404, 429)},
    )
    def put(self, request, tag_id):
        return self._update(request, tag_id, partial=False)

    @extend_schema(
        tags=["tags"],
        summary="Change some fields of a tag",
        request=s.TagInputSerializer,
        responses={**_one("TagPatched", s.TagOutputSerializer()), **error_responses(400, 401, 404, 429)},
    )
    def patch(self, request, tag_id):
        return self._update(request, tag_id, partial=True)

    @extend_schema(
        tags=["tags"],
        summary="Delete a tag (admins); it is removed from every lead",
        responses={200: SuccessSerializer, **error_responses(401, 403, 404, 429)},
    )
    def delete(self, request, tag_id):
        services.tag_delete(user=request.user, tag=self._tag(request, tag_id))
        return Response({"success": True, "message": "Tag deleted."})


class LeadWebhookView(APIView):
    """No login, any origin: `userId` names the account. When the account has a
    webhook secret, the X-Webhook-Secret header must carry it."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (WebhookRateThrottle,)

    @extend_schema(
        tags=["webhooks"],
        summary="Lead-ingestion webhook",
        description="Creates the lead (201) or, for a phone the account already has, updates its non-empty "
        "fields and logs an engagement (200). Never a duplicate.",
        auth=[],
        parameters=[OpenApiParameter("X-Webhook-Secret", str, OpenApiParameter.HEADER, required=False)],
        request=s.LeadWebhookInputSerializer,
        responses={
            201: inline_serializer(
                "LeadWebhookAnswer",
                {
                    "success": drf_serializers.BooleanField(),
                    "message": drf_serializers.CharField(),
                    "data": inline_serializer(
                        "LeadWebhookData",
                        {"leadId": drf_serializers.UUIDField(), "created": drf_serializers.BooleanField()},
                    ),
                },
            ),
            **error_responses(400, 401, 404, 429),
        },
    )
    def post(self, request):
        data = _validated(s.LeadWebhookInputSerializer, request.data)
        account = Account.objects.filter(pk=data["userId"]).first()
        if account is None:
            raise NotFound("No account has this userId.")
        if account.webhook_secret and not hmac.compare_digest(
            request.headers.get("X-Webhook-Secret", "").encode(), account.webhook_secret.encode()
        ):
            raise WebhookSecretInvalid()
        lead, created = services.lead_ingest(account=account, phone=data["phone"], data=data)
        return Response(
            {
                "success": True,
                "message": "Lead created." if created else "Lead updated.",
                "data": {"leadId": str(lead.pk), "created": created},
            },
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class WebhookSecretInvalid(DomainError):
    status_code = 401
    code = "WEBHOOK_SECRET_INVALID"
    default_message = "The X-Webhook-Secret header is missing or wrong."


class ContactListView(APIView):
    """HeyDoc's contacts: a bare JSON array, as its document shows."""

    max_limit = 1000
    default_limit = 500

    @extend_schema(
        tags=["HeyDoc"],
        summary="All contacts with their chats (HeyDoc)",
        operation_id="contacts_list",
        description="A bare array, latest conversation first. `limit` (default 500, at most 1000) and `page` "
        "bound it; the total is in the X-Total-Count header.",
        parameters=[
            OpenApiParameter("limit", int, required=False),
            OpenApiParameter("page", int, required=False),
        ],
        responses={200: s.ContactOutputSerializer(many=True), **error_responses(400, 401, 429)},
    )
    def get(self, request):
        paginator = PageLimitPagination()
        paginator.page_size, paginator.max_page_size = self.default_limit, self.max_limit
        contacts = paginator.paginate_queryset(selectors.contact_list(user=request.user), request, view=self)
        response = Response(s.ContactOutputSerializer(contacts, many=True).data)
        response["X-Total-Count"] = str(paginator.total)
        return response
