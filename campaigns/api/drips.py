"""Drip routes: the Heroshhi document's ``GET /api/drips`` and
``POST /api/drips/:id/enroll``, plus create, read, update, delete, the enrollments
of a drip and stopping one. Views parse, authorize, call one service or selector,
serialize.

Admins manage drips; agents may list and read them, enroll the leads they can see,
and list and stop those leads' enrollments. Another account's drip is 404."""

from contextlib import contextmanager

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns.api import drip_serializers as s
from campaigns.selectors import drips as selectors
from campaigns.services import drips as services
from heroshhi.api import ErrorEnvelopeSerializer, PageLimitPagination, SuccessSerializer, api_path, error_responses
from heroshhi.errors import ValidationFailed

TAGS = ["drips"]


def _validated(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _one(name: str, serializer, status_code: int = 200, **extra) -> dict:
    fields = {"success": drf_serializers.BooleanField(), **extra, "data": serializer}
    return {status_code: inline_serializer(name, fields)}


@contextmanager
def _api_field_names():
    """The service's field errors, renamed to the API's fields."""
    try:
        yield
    except ValidationFailed as exc:
        raise ValidationFailed(exc.message, errors=s.api_errors(exc.errors or {})) from None


def _drip_data(request, drip, counts=None) -> dict:
    if counts is None:
        counts = selectors.drip_enrollment_counts(drips=[drip])
    context = {"counts": counts, "time_zone": request.user.account.time_zone}
    return s.DripOutputSerializer(drip, context=context).data


def _fresh(request, drip_id):
    return selectors.drip_get(user=request.user, drip_id=drip_id)


DRIP_400 = OpenApiResponse(
    ErrorEnvelopeSerializer,
    description="`VALIDATION_ERROR` with `errors` nested as the request (`steps.2.template.name`): an unknown "
    "unit, a negative or too large delay, no steps or more than 50, a step with both or neither of `message` and "
    "`template`, a text over 4,096 characters, a template that is not APPROVED, a window starting when it ends, "
    "an unknown field value. Nothing is written.",
)


class DripListCreateView(APIView):
    pagination_class = PageLimitPagination

    @extend_schema(
        tags=TAGS,
        summary="List drip campaigns",
        description="The account's drips by name, each with its steps in order and its enrollments per status "
        "(`active`, `completed`, `stopped`, `total`). Paginated (`page`, `limit`).",
        operation_id="drips_list",
        responses={200: s.DripOutputSerializer(many=True), **error_responses(400, 401, 429)},
    )
    def get(self, request):
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(selectors.drip_list(user=request.user), request, view=self)
        counts = selectors.drip_enrollment_counts(drips=page)
        return paginator.get_paginated_response([_drip_data(request, drip, counts) for drip in page])

    @extend_schema(
        tags=TAGS,
        summary="Create a drip (admins)",
        description="Steps run in the order given, each `delay` after the previous step (the first: after the "
        "enrollment). A step is a text (`message`, only sent inside the lead's 24-hour window) or an approved "
        "`template` (checked now, and again at send time). `sendWindow` limits sends to a daily window in the "
        "account's time zone; steps due outside it wait for its next start.",
        request=s.DripInputSerializer,
        responses={
            **_one("DripCreated", s.DripOutputSerializer(), 201),
            400: DRIP_400,
            **error_responses(401, 403, 413, 429),
        },
    )
    def post(self, request):
        services.drip_manage_check(user=request.user)
        data = _validated(s.DripInputSerializer, request.data)
        with _api_field_names():
            drip = services.drip_create(account=request.user.account, user=request.user, data=s.to_service_data(data))
        drip = _fresh(request, drip.pk)
        return Response({"success": True, "data": _drip_data(request, drip)}, status=status.HTTP_201_CREATED)


class DripDetailView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Get a drip with its steps and enrollment counts",
        operation_id="drips_get",
        responses={**_one("DripDetail", s.DripOutputSerializer()), **error_responses(401, 404, 429)},
    )
    def get(self, request, drip_id):
        return Response({"success": True, "data": _drip_data(request, _fresh(request, drip_id))})

    def _update(self, request, drip_id, *, partial: bool):
        drip = _fresh(request, drip_id)
        services.drip_manage_check(user=request.user)
        data = _validated(s.DripInputSerializer, request.data, partial=partial)
        with _api_field_names():
            services.drip_update(drip=drip, user=request.user, data=s.to_service_data(data))
        return Response({"success": True, "data": _drip_data(request, _fresh(request, drip_id))})

    @extend_schema(
        tags=TAGS,
        summary="Replace a drip (admins)",
        description="Every field; fields left out take their defaults. The steps replace the drip's steps as a "
        "whole, in one transaction: a refused update changes nothing. Enrollments keep their place (the position "
        "of their next step) and its due time; from their next step on they follow the new steps.",
        request=s.DripInputSerializer,
        responses={
            **_one("DripReplaced", s.DripOutputSerializer()),
            400: DRIP_400,
            **error_responses(401, 403, 404, 413, 429),
        },
    )
    def put(self, request, drip_id):
        return self._update(request, drip_id, partial=False)

    @extend_schema(
        tags=TAGS,
        summary="Change some fields of a drip (admins)",
        description="Only the fields given. `steps`, when given, replace the drip's steps as a whole. "
        "`isActive: false` pauses the drip: nothing is sent and nobody can be enrolled until it is active again; "
        "steps that fell due meanwhile go out at the next run (within the send window).",
        request=s.DripInputSerializer,
        responses={
            **_one("DripPatched", s.DripOutputSerializer()),
            400: DRIP_400,
            **error_responses(401, 403, 404, 413, 429),
        },
    )
    def patch(self, request, drip_id):
        return self._update(request, drip_id, partial=True)

    @extend_schema(
        tags=TAGS,
        summary="Delete a drip (admins)",
        description="Deletes the drip with its steps and enrollments; its messages not yet handed to WhatsApp are "
        "dropped. Messages already sent stay in the conversations.",
        responses={200: SuccessSerializer, **error_responses(401, 403, 404, 429)},
    )
    def delete(self, request, drip_id):
        services.drip_delete(drip=_fresh(request, drip_id), user=request.user)
        return Response({"success": True, "message": "Drip deleted."})


class DripEnrollView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Enroll leads in a drip",
        description="Enrolls the leads named by `leadIds` (at most 5,000) that you can see. Nothing is refused "
        "per lead; the answer counts: `enrolled`; `already` (already active in this drip: nothing happens to "
        "them — a lead who finished or was stopped can be enrolled again); `skipped_opted_out`; "
        "`skipped_converted` (converted leads, when the drip stops on conversion); `invalid` (ids naming no lead "
        "you can see: another account's, a colleague's for an agent, deleted). The first step is due at the "
        "enrollment time plus its delay. An inactive drip refuses enrollments with `DRIP_INACTIVE`.",
        operation_id="drips_enroll",
        request=s.DripEnrollInputSerializer,
        responses={
            **_one("DripEnrolled", s.DripEnrollResultSerializer(), message=drf_serializers.CharField()),
            400: OpenApiResponse(
                ErrorEnvelopeSerializer,
                description="`VALIDATION_ERROR` (not UUIDs, empty, over 5,000), `DRIP_INACTIVE`, `INVALID_JSON`.",
            ),
            **error_responses(401, 404, 429),
        },
    )
    def post(self, request, drip_id):
        drip = _fresh(request, drip_id)
        data = _validated(s.DripEnrollInputSerializer, request.data)
        result = services.drip_enroll(drip=drip, user=request.user, lead_ids=data["leadIds"])
        counts = s.DripEnrollResultSerializer(result).data
        return Response({"success": True, "message": f"{result.enrolled} lead(s) enrolled.", "data": counts})


class DripEnrollmentListView(APIView):
    pagination_class = PageLimitPagination

    @extend_schema(
        tags=TAGS,
        summary="The drip's enrollments",
        description="Latest first, paginated, optionally by `status` (active, completed, stopped). Agents see "
        "the enrollments of the leads they can see.",
        operation_id="drips_enrollments_list",
        parameters=[s.DripEnrollmentFilterSerializer],
        responses={200: s.DripEnrollmentOutputSerializer(many=True), **error_responses(400, 401, 404, 429)},
    )
    def get(self, request, drip_id):
        drip = _fresh(request, drip_id)
        query = _validated(s.DripEnrollmentFilterSerializer, request.query_params)
        enrollments = selectors.enrollment_list(user=request.user, drip=drip, status=query.get("status"))
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(enrollments, request, view=self)
        return paginator.get_paginated_response(s.DripEnrollmentOutputSerializer(page, many=True).data)


class EnrollmentStopView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Stop one enrollment",
        description="The lead gets no further step of this drip (`status: stopped`, `stopReason: cancelled`); a "
        "step message not yet handed to WhatsApp is dropped. An enrollment already completed or stopped is left "
        "as it is and answered as such.",
        request=None,
        responses={**_one("EnrollmentStopped", s.DripEnrollmentOutputSerializer()), **error_responses(401, 404, 429)},
    )
    def post(self, request, drip_id, enrollment_id):
        drip = _fresh(request, drip_id)
        enrollment = selectors.enrollment_get(user=request.user, drip=drip, enrollment_id=enrollment_id)
        services.enrollments_stop(drip=drip, enrollment_ids=[enrollment.pk])
        enrollment = selectors.enrollment_get(user=request.user, drip=drip, enrollment_id=enrollment_id)
        return Response({"success": True, "data": s.DripEnrollmentOutputSerializer(enrollment).data})


urlpatterns = [
    *api_path("drips", DripListCreateView.as_view(), "api-drips"),
    *api_path("drips/<uuid:drip_id>", DripDetailView.as_view(), "api-drip"),
    *api_path("drips/<uuid:drip_id>/enroll", DripEnrollView.as_view(), "api-drip-enroll"),
    *api_path("drips/<uuid:drip_id>/enrollments", DripEnrollmentListView.as_view(), "api-drip-enrollments"),
    *api_path(
        "drips/<uuid:drip_id>/enrollments/<int:enrollment_id>/stop",
        EnrollmentStopView.as_view(),
        "api-drip-enrollment-stop",
    ),
]
