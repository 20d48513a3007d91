"""Meta's webhook (/api/webhooks/whatsapp): the verify handshake and signed events.

No login and any origin (heroshhi.apps opens CORS for /api/webhooks/); the webhook
rate limit applies. The view reads the raw body and hands it to
``messaging.webhooks``, which checks the signature, stores and processes it."""

from django.http import HttpResponse, JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from heroshhi.api import ErrorEnvelopeSerializer, api_path, error_responses
from heroshhi.ratelimit import WebhookRateThrottle
from messaging import webhooks


class WhatsAppWebhookView(APIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (WebhookRateThrottle,)
    # Nothing may parse the body before the signature is checked against its raw bytes.
    parser_classes = ()

    @extend_schema(
        tags=["webhooks"],
        summary="Meta's webhook verification handshake",
        description=(
            "Meta calls this when the webhook is subscribed in the app dashboard. The challenge is "
            "answered as plain text when `hub.verify_token` is the verify token of a WhatsApp "
            "connection (any account); otherwise 403 `VERIFY_TOKEN_INVALID`."
        ),
        auth=[],
        parameters=[
            OpenApiParameter("hub.mode", str, OpenApiParameter.QUERY, required=True, enum=["subscribe"]),
            OpenApiParameter("hub.verify_token", str, OpenApiParameter.QUERY, required=True),
            OpenApiParameter("hub.challenge", str, OpenApiParameter.QUERY, required=True),
        ],
        responses={
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="The challenge, as sent."),
            **error_responses(429),
            403: OpenApiResponse(ErrorEnvelopeSerializer, description="VERIFY_TOKEN_INVALID"),
        },
    )
    def get(self, request):
        challenge = webhooks.webhook_verify(
            mode=request.GET.get("hub.mode", ""),
            token=request.GET.get("hub.verify_token", ""),
            challenge=request.GET.get("hub.challenge", ""),
        )
        return HttpResponse(challenge, content_type="text/plain; charset=utf-8")

    @extend_schema(
        tags=["webhooks"],
        summary="WhatsApp Cloud API events (messages, statuses, preferences, echoes)",
        description=(
            "Meta's `whatsapp_business_account` deliveries. `X-Hub-Signature-256: sha256=<hex>` must be "
            "the HMAC-SHA256 of the raw body with the app secret of the connection named by "
            "`entry[].changes[].value.metadata.phone_number_id`; a missing or wrong signature is 401 "
            "`SIGNATURE_INVALID` and nothing is stored. Malformed JSON is 400 `INVALID_JSON`. Accepted "
            "deliveries are stored and processed idempotently (Meta retries): inbound messages, "
            "statuses (never backwards), STOP/START opt words, `user_preferences`, coexistence echoes."
        ),
        auth=[],
        parameters=[OpenApiParameter("X-Hub-Signature-256", str, OpenApiParameter.HEADER, required=True)],
        request={"application/json": OpenApiTypes.OBJECT},
        responses={
            200: inline_serializer(
                "WhatsAppWebhookAnswer",
                {
                    "success": serializers.BooleanField(),
                    "processed": serializers.BooleanField(
                        help_text="False when the delivery was stored for a background worker."
                    ),
                },
            ),
            **error_responses(400, 413, 429),
            401: OpenApiResponse(ErrorEnvelopeSerializer, description="SIGNATURE_INVALID"),
        },
    )
    def post(self, request):
        receipt = webhooks.webhook_receive(body=request.body, signature=request.headers.get("X-Hub-Signature-256", ""))
        return JsonResponse({"success": True, "processed": receipt.processed})


urlpatterns = [
    *api_path("webhooks/whatsapp", WhatsAppWebhookView.as_view(), "api-webhook-whatsapp"),
]
