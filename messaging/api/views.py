"""Message and WhatsApp routes of the Heroshhi document (/api/messages…,
/api/whatsapp…) and HeyDoc's GET /api/messages/{phone} and POST /api/send_message.

Views parse, authorize, call one selector or service, serialize. Every send goes
through messaging.services.message_send; a failed single send becomes its API error
through raise_for_failed."""

import contextlib
import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsAccountAdmin
from heroshhi.api import ErrorEnvelopeSerializer, PageLimitPagination, error_responses
from heroshhi.errors import DomainError, NotFound, ValidationFailed
from leads.phones import display_phone
from leads.selectors import LeadFilters, lead_get
from leads.services import lead_create
from messaging import selectors, services
from messaging.api import serializers as s
from messaging.models import Message
from messaging.providers import ProviderError


class WhatsAppUnavailable(DomainError):
    status_code = 400
    code = "WHATSAPP_ERROR"
    default_message = "The WhatsApp Cloud API refused the request."


def _validated(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _one(name: str, serializer, status_code: int = 200, **extra) -> dict:
    fields = {"success": drf_serializers.BooleanField(), **extra, "data": serializer}
    return {status_code: inline_serializer(name, fields)}


OPT_OUT_EXAMPLE = OpenApiExample(
    "OPT_OUT_BLOCKED",
    value={"success": False, "message": "Cannot send message - contact has opted out", "error": "OPT_OUT_BLOCKED"},
    response_only=True,
    status_codes=["400"],
)
WINDOW_EXAMPLE = OpenApiExample(
    "WINDOW_CLOSED",
    value={
        "success": False,
        "message": "The 24-hour customer service window is closed: the contact has not written in the last "
        "24 hours. Send an approved template instead.",
        "error": "WINDOW_CLOSED",
    },
    response_only=True,
    status_codes=["400"],
)
SEND_ERRORS_400 = OpenApiResponse(
    ErrorEnvelopeSerializer,
    description="`OPT_OUT_BLOCKED` (the contact opted out; exactly the document's body), `WINDOW_CLOSED` "
    "(free-form text outside the 24-hour window: send a template), `TEMPLATE_NOT_APPROVED`, `SEND_FAILED` "
    "(WhatsApp refused it; the message is stored as failed and its id is in `errors.messageId`), "
    "`VALIDATION_ERROR`, `INVALID_JSON`.",
    examples=[OPT_OUT_EXAMPLE, WINDOW_EXAMPLE],
)
SEND_DESCRIPTION = (
    "Free-form text is allowed only inside the 24-hour customer service window (the contact wrote in the last "
    "24 hours); an approved template is allowed at any time. Opted-out contacts are never messaged: the answer "
    "is 400 `OPT_OUT_BLOCKED` with exactly the document's body (400, because the document's status codes are "
    "200/201/400/401/404/429 and the request itself is what is refused). Without a WhatsApp Cloud API "
    'connection the message goes to the sandbox (`provider: "sandbox"`, a `wamid.sandbox.…` id, statuses '
    "walking sent → delivered → read). When WhatsApp is momentarily busy (throughput limits, network) after "
    "the client's own retries, the message is answered `queued` and the worker retries it."
)


def _send(request, lead, data: dict, *, source: str = Message.Source.API) -> Message:
    message = services.message_send(
        account=request.user.account,
        lead=lead,
        text=data.get("message", ""),
        template=s.template_ref(data),
        user=request.user,
        source=source,
    )
    return services.raise_for_failed(message)


def _sent_answer(message: Message, data: dict) -> Response:
    text = "Message sent." if message.status != Message.Status.QUEUED else "Message queued; it will be retried."
    return Response({"success": True, "message": text, "data": data}, status=status.HTTP_201_CREATED)


# --- /api/messages ----------------------------------------------------------------------


class MessageListView(APIView):
    pagination_class = PageLimitPagination

    @extend_schema(
        tags=["messages"],
        summary="List messages with filters and pagination",
        description="Newest first. Agents see the messages of the leads they may see (assigned to them or to "
        "nobody). `createdFrom`/`createdTo` dates are whole days in the account's time zone.",
        operation_id="messages_list",
        parameters=[s.MessageFilterSerializer],
        responses={200: s.MessageOutputSerializer(many=True), **error_responses(400, 401, 429)},
    )
    def get(self, request):
        query = _validated(s.MessageFilterSerializer, request.query_params)
        filters = selectors.MessageFilters(
            direction=query.get("direction"),
            status=query.get("status"),
            lead_id=query.get("leadId"),
            type=query.get("type"),
            created_from=query.get("createdFrom"),
            created_to=query.get("createdTo"),
            search=query.get("search"),
        )
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(selectors.message_list(user=request.user, filters=filters), request, self)
        return paginator.get_paginated_response(s.MessageOutputSerializer(page, many=True).data)


_PAGINATION = inline_serializer(
    "PaginationInfo",
    {
        "page": drf_serializers.IntegerField(),
        "limit": drf_serializers.IntegerField(),
        "total": drf_serializers.IntegerField(),
        "pages": drf_serializers.IntegerField(),
    },
)
_CONVERSATION_PAGE = inline_serializer(
    "LeadConversationPage",
    {
        "success": drf_serializers.BooleanField(),
        "data": s.MessageOutputSerializer(many=True),
        "pagination": _PAGINATION,
    },
)


class MessagesOfLeadOrPhoneView(APIView):
    """``/api/messages/<ref>``: a lead id (UUID) is the Heroshhi route, a phone
    (digits, optionally after "+") is HeyDoc's. /send and /templates are routed
    before this one."""

    @extend_schema(
        tags=["messages"],
        summary="A lead's conversation (lead id) or HeyDoc's history of a phone",
        operation_id="messages_of_lead_or_phone",
        description=(
            "**`ref` is a lead id (UUID)** — the Heroshhi route: `{success, data: [messages], pagination}`, "
            "newest first (`order=asc` for oldest first), `page`/`limit` (default 20, at most 200). A lead of "
            "another account, or one an agent may not see, is 404.\n\n"
            "**`ref` is a phone** (digits with country code, optionally after `+`) — HeyDoc's route: a bare "
            "array of HeyDoc messages, the newest `limit` (default 20, at most 200) in chronological order. "
            "`direction` is `incoming`/`outgoing`; our side's phone (`sender_phone` of outgoing, "
            "`receiver_phone` of incoming) is the connected number's digits, or `sandbox`. `id` is the "
            "message's UUID (HeyDoc shows an integer; Heroshhi has no stable integer id). A phone with no lead "
            "you can see answers `[]`. Reading marks nothing as read unless `mark_read=1` (then the contact's "
            "incoming messages count as read by the team, and `unread_count` of /api/contacts drops)."
        ),
        parameters=[
            OpenApiParameter(
                "ref", OpenApiTypes.STR, OpenApiParameter.PATH, description="A lead id (UUID) or a phone (digits)."
            ),
            OpenApiParameter("page", OpenApiTypes.INT, required=False, description="Lead id only."),
            OpenApiParameter("limit", OpenApiTypes.INT, required=False, description="Default 20, at most 200."),
            OpenApiParameter(
                "order", OpenApiTypes.STR, enum=["desc", "asc"], required=False, description="Lead id only."
            ),
            OpenApiParameter("mark_read", OpenApiTypes.BOOL, required=False, description="Phone only."),
        ],
        responses={
            200: PolymorphicProxySerializer(
                component_name="LeadConversationOrHeyDocHistory",
                serializers=[_CONVERSATION_PAGE, s.HeyDocMessageSerializer(many=True)],
                resource_type_field_name=None,
                many=False,
            ),
            **error_responses(400, 401, 404, 429),
        },
    )
    def get(self, request, ref: str):
        if selectors.is_phone_ref(ref):
            return self._heydoc(request, ref)
        try:
            lead_id = uuid.UUID(ref)
        except ValueError:
            raise NotFound("Use a lead id (UUID) or a phone number (digits).") from None
        return self._conversation(request, lead_id)

    def _conversation(self, request, lead_id: uuid.UUID) -> Response:
        lead = lead_get(user=request.user, lead_id=lead_id)
        query = _validated(s.ConversationQuerySerializer, request.query_params)
        messages = selectors.conversation(lead=lead, oldest_first=query["order"] == "asc")
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(messages, request, self)
        return paginator.get_paginated_response(s.MessageOutputSerializer(page, many=True).data)

    def _heydoc(self, request, phone: str) -> Response:
        query = _validated(s.HeyDocHistoryQuerySerializer, request.query_params)
        lead = selectors.lead_by_phone(user=request.user, phone=phone)
        if lead is None:
            return Response([])
        if query["mark_read"]:
            services.messages_mark_read(lead=lead)
        history = selectors.heydoc_history(lead=lead, limit=query["limit"])
        connection = selectors.connection_for(account=request.user.account)
        context = {"business_number": selectors.business_number(connection=connection), "lead_phone": lead.phone}
        return Response(s.HeyDocMessageSerializer(history, many=True, context=context).data)


class MessageSendView(APIView):
    @extend_schema(
        tags=["messages"],
        summary="Send a text or a template to a lead",
        description=SEND_DESCRIPTION,
        operation_id="messages_send",
        request=s.SendInputSerializer,
        responses={
            **_one("MessageSent", s.MessageOutputSerializer(), 201, message=drf_serializers.CharField()),
            400: SEND_ERRORS_400,
            **error_responses(401, 404, 429),
        },
    )
    def post(self, request):
        data = _validated(s.SendInputSerializer, request.data)
        lead = lead_get(user=request.user, lead_id=data["leadId"])
        message = _send(request, lead, data)
        return _sent_answer(message, s.MessageOutputSerializer(message).data)


class MessageTemplatesView(APIView):
    @extend_schema(
        tags=["messages"],
        summary="List WhatsApp templates",
        description="The templates synced from the WhatsApp Business Account (only `APPROVED` ones can be "
        "sent). Loaded on first use; `refresh=1` syncs again from Meta. Without a Cloud API connection these "
        "are the sandbox's templates: `provider` is `sandbox` and each has `isSandbox: true`.",
        operation_id="messages_templates_list",
        parameters=[s.TemplateQuerySerializer],
        responses={
            **_one(
                "TemplateList",
                s.TemplateOutputSerializer(many=True),
                provider=drf_serializers.ChoiceField(choices=Message.Provider.choices),
                sandbox=drf_serializers.BooleanField(),
            ),
            400: OpenApiResponse(
                ErrorEnvelopeSerializer, description="`WHATSAPP_ERROR` (refresh refused by Meta), `VALIDATION_ERROR`"
            ),
            **error_responses(401, 429),
        },
    )
    def get(self, request):
        query = _validated(s.TemplateQuerySerializer, request.query_params)
        account = request.user.account
        if query["refresh"]:
            try:
                services.templates_sync(account=account)
            except ProviderError as exc:
                raise WhatsAppUnavailable(f"WhatsApp refused the template sync ({exc.code}: {exc.title}).") from None
        elif selectors.templates_need_sync(account=account):
            # First load: on failure show what is stored; refresh=1 reports the error.
            with contextlib.suppress(ProviderError):
                services.templates_sync(account=account)
        sandbox = selectors.connection_for(account=account) is None
        templates = selectors.template_list(account=account)
        return Response(
            {
                "success": True,
                "provider": Message.Provider.SANDBOX if sandbox else Message.Provider.CLOUD,
                "sandbox": sandbox,
                "data": s.TemplateOutputSerializer(templates, many=True).data,
            }
        )


# --- /api/whatsapp ----------------------------------------------------------------------


def _status_data(account) -> dict:
    return s.WhatsAppStatusSerializer(selectors.whatsapp_status(account=account)).data


class WhatsAppStatusView(APIView):
    @extend_schema(
        tags=["whatsapp"],
        summary="WhatsApp connection status",
        description='The Cloud API number, or the sandbox (`provider: "sandbox"`, `status: "sandbox"`) when '
        "none is connected. `status: token_invalid` means Meta refused the access token (error 190). The access "
        "token and app secret are never returned.",
        operation_id="whatsapp_status",
        responses={**_one("WhatsAppStatusAnswer", s.WhatsAppStatusSerializer()), **error_responses(401, 429)},
    )
    def get(self, request):
        return Response({"success": True, "data": _status_data(request.user.account)})


class WhatsAppConnectView(APIView):
    permission_classes = (IsAuthenticated, IsAccountAdmin)

    @extend_schema(
        tags=["whatsapp"],
        summary="Connect a WhatsApp Cloud API number (admins)",
        description="The credentials are checked with a Graph API call first; if Meta refuses them the answer "
        "is a VALIDATION_ERROR and nothing is saved. The access token and app secret are stored encrypted and "
        "never returned. Connecting again replaces the credentials. Templates are synced right away.",
        operation_id="whatsapp_connect",
        request=s.ConnectInputSerializer,
        responses={
            **_one("WhatsAppConnected", s.WhatsAppStatusSerializer(), message=drf_serializers.CharField()),
            **error_responses(400, 401, 403, 429),
        },
    )
    def post(self, request):
        data = _validated(s.ConnectInputSerializer, request.data)
        account = request.user.account
        services.whatsapp_connect(
            account=account,
            phone_number_id=data["phoneNumberId"],
            waba_id=data["wabaId"],
            access_token=data["accessToken"],
            app_secret=data["appSecret"],
            verify_token=data["verifyToken"],
            throughput_cap=data["throughputCap"],
        )
        return Response({"success": True, "message": "WhatsApp connected.", "data": _status_data(account)})


class WhatsAppDisconnectView(APIView):
    permission_classes = (IsAuthenticated, IsAccountAdmin)

    @extend_schema(
        tags=["whatsapp"],
        summary="Disconnect WhatsApp (admins)",
        description="Deletes the stored credentials and Meta's templates; sends go to the sandbox from then on. "
        "Disconnecting a workspace that has no connection answers 200 too.",
        operation_id="whatsapp_disconnect",
        responses={
            **_one("WhatsAppDisconnected", s.WhatsAppStatusSerializer(), message=drf_serializers.CharField()),
            **error_responses(401, 403, 429),
        },
    )
    def delete(self, request):
        account = request.user.account
        removed = services.whatsapp_disconnect(account=account)
        text = "WhatsApp disconnected; messages now go to the sandbox." if removed else "No connection to remove."
        return Response({"success": True, "message": text, "data": _status_data(account)})


class WhatsAppSendView(APIView):
    @extend_schema(
        tags=["whatsapp"],
        summary="Send a message (blocked if opted out)",
        description=SEND_DESCRIPTION + " Name the lead by `leadId` or by the `phone` of an existing lead.",
        operation_id="whatsapp_send",
        request=s.WhatsAppSendInputSerializer,
        responses={
            **_one("WhatsAppMessageSent", s.MessageOutputSerializer(), 201, message=drf_serializers.CharField()),
            400: SEND_ERRORS_400,
            **error_responses(401, 404, 429),
        },
    )
    def post(self, request):
        data = _validated(s.WhatsAppSendInputSerializer, request.data)
        if "leadId" in data:
            lead = lead_get(user=request.user, lead_id=data["leadId"])
        else:
            lead = selectors.lead_by_phone(user=request.user, phone=data["phone"])
            if lead is None:
                raise NotFound("No lead you can see has this phone number.")
        message = _send(request, lead, data)
        return _sent_answer(message, s.MessageOutputSerializer(message).data)


class WhatsAppSendBulkView(APIView):
    @extend_schema(
        tags=["whatsapp"],
        summary="Bulk send (opt-outs filtered)",
        description="One message per lead, named by `leadIds` (at most 5,000) or matched by `filter` (the lead "
        "list's filters; at most 5,000 matches — use a broadcast for more). Messages are created `queued` and "
        "sent by the background worker at the number's throughput. Nothing is refused per lead: opted-out leads "
        "are skipped and counted in `skipped_opted_out`, ids naming no lead you can see in `invalid`, and for "
        "free-form text the leads outside the 24-hour window in `windowClosed` (templates go to them). A "
        "template that is not approved refuses the whole request (`TEMPLATE_NOT_APPROVED`).",
        operation_id="whatsapp_send_bulk",
        request=s.SendBulkInputSerializer,
        responses={
            **_one("BulkSendAnswer", s.SendBulkResultSerializer(), message=drf_serializers.CharField()),
            **error_responses(400, 401, 429),
        },
    )
    def post(self, request):
        data = _validated(s.SendBulkInputSerializer, request.data)
        filters = None
        if "filter" in data:
            query = data["filter"]
            filters = LeadFilters(
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
        audience = selectors.bulk_audience(user=request.user, lead_ids=data.get("leadIds"), filters=filters)
        result = services.message_send_bulk(
            account=request.user.account,
            leads=audience.leads,
            text=data.get("message", ""),
            template=s.template_ref(data),
            user=request.user,
        )
        counts = {
            "requested": len(audience.leads) + audience.invalid,
            "queued": result.queued,
            "skipped_opted_out": result.skipped_opted_out,
            "invalid": audience.invalid + result.invalid,
            "windowClosed": result.window_closed,
        }
        return Response({"success": True, "message": f"{result.queued} message(s) queued.", "data": counts})


class WhatsAppCoexistenceView(APIView):
    def get_permissions(self):
        if self.request.method == "PUT":
            return [IsAuthenticated(), IsAccountAdmin()]
        return super().get_permissions()

    @extend_schema(
        tags=["whatsapp"],
        summary="Coexistence settings",
        description="Coexistence: the WhatsApp Business app runs on the same number. `recordAppEchoes` records "
        "messages sent from the phone app as outbound messages; `syncAppContacts` creates leads from the app's "
        "contacts. Without a connection (sandbox) the answer is 400 `WHATSAPP_NOT_CONNECTED`.",
        operation_id="whatsapp_coexistence_get",
        responses={
            **_one("CoexistenceAnswer", s.CoexistenceOutputSerializer(), throughputCap=drf_serializers.IntegerField()),
            **error_responses(400, 401, 429),
        },
    )
    def get(self, request):
        connection = selectors.connection_get(account=request.user.account)
        return self._answer(connection)

    @extend_schema(
        tags=["whatsapp"],
        summary="Update coexistence settings (admins)",
        description="Any of `enabled`, `recordAppEchoes`, `syncAppContacts`. Turning coexistence on caps the "
        "number's throughput at 20 messages a second (Meta's limit for coexistence numbers).",
        operation_id="whatsapp_coexistence_update",
        request=s.CoexistenceSerializer,
        responses={
            **_one("CoexistenceUpdated", s.CoexistenceOutputSerializer(), throughputCap=drf_serializers.IntegerField()),
            **error_responses(400, 401, 403, 429),
        },
    )
    def put(self, request):
        connection = selectors.connection_get(account=request.user.account)
        data = _validated(s.CoexistenceSerializer, request.data)
        connection = services.coexistence_update(
            connection=connection,
            enabled=data.get("enabled"),
            record_app_echoes=data.get("recordAppEchoes"),
            sync_app_contacts=data.get("syncAppContacts"),
        )
        return self._answer(connection)

    def _answer(self, connection) -> Response:
        data = s.CoexistenceOutputSerializer(selectors.coexistence_of(connection)).data
        return Response({"success": True, "throughputCap": connection.throughput_cap, "data": data})


# --- HeyDoc: POST /api/send_message -----------------------------------------------------


def _lead_for_heydoc(request, phone: str):
    """The lead with this phone, created (source "api", named after the phone) when the
    account has none. A phone of a lead the agent may not see is 404."""
    lead = selectors.lead_by_phone(user=request.user, phone=phone, field_name="phone_number")
    if lead is not None:
        return lead
    e164 = selectors.phone_e164(account=request.user.account, phone=phone, field_name="phone_number")
    try:
        return lead_create(user=request.user, data={"name": display_phone(e164), "phone": e164, "source": "api"})
    except ValidationFailed:
        # Created a moment ago by another request, or a lead this agent may not see.
        lead = selectors.lead_by_phone(user=request.user, phone=e164, field_name="phone_number")
        if lead is None:
            raise NotFound("No lead you can see has this phone number.") from None
        return lead


class HeyDocSendMessageView(APIView):
    @extend_schema(
        tags=["HeyDoc"],
        summary="Send a WhatsApp message to a phone number (HeyDoc)",
        description=(
            'Answers `{success: true, data: {…message…}, message: "Message sent successfully"}`; `data` is the '
            "message in HeyDoc's shape (as in GET /api/messages/{phone}) plus `lead_id`. A phone the account "
            "does not know creates the lead first (source `api`, named after the phone). The 24-hour window "
            "applies: a new contact has never written, so a text to it is refused with `WINDOW_CLOSED` (the "
            "lead stays created) — send new contacts an approved template, with this route's `template` field "
            "(a Heroshhi extension) or POST /api/messages/send. An opted-out contact answers `OPT_OUT_BLOCKED`. "
            "Errors use the envelope `{success: false, message, error}`. Works with the session cookie (send "
            "`X-CSRFToken`) or a bearer token."
        ),
        operation_id="heydoc_send_message",
        request=s.HeyDocSendInputSerializer,
        responses={
            **_one("HeyDocMessageSent", s.HeyDocMessageWithLeadSerializer(), 200, message=drf_serializers.CharField()),
            400: SEND_ERRORS_400,
            **error_responses(401, 403, 404, 429),
        },
    )
    def post(self, request):
        data = _validated(s.HeyDocSendInputSerializer, request.data)
        lead = _lead_for_heydoc(request, data["phone_number"])
        message = _send(request, lead, data)
        connection = selectors.connection_for(account=request.user.account)
        context = {"business_number": selectors.business_number(connection=connection), "lead_phone": lead.phone}
        body = s.HeyDocMessageWithLeadSerializer(message, context=context).data
        queued = message.status == Message.Status.QUEUED
        text = "Message queued; it will be retried." if queued else "Message sent successfully"
        return Response({"success": True, "data": body, "message": text})
