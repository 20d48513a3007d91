"""The API's common shape: the error envelope, the exception handler, pagination
and the trailing-slash-optional route helper.

Every error of every ``/api/`` route is ``{success: false, message, error}``
where ``error`` is a stable machine code; field errors add ``errors``; the raw
exception text is added as ``detail`` only when DEBUG is on.
"""

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.urls import path
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, parsers, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.settings import api_settings
from rest_framework_simplejwt.exceptions import InvalidToken as JWTInvalidToken

from heroshhi.errors import DomainError

STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "NOT_AUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
    500: "SERVER_ERROR",
}
STATUS_MESSAGES = {
    400: "Bad request.",
    401: "Authentication credentials were not provided.",
    403: "You do not have permission to do this.",
    404: "Not found.",
    405: "Method not allowed.",
    406: "Not acceptable.",
    413: "The request body is too large.",
    415: "Unsupported media type.",
    429: "Too many requests. Slow down and try again later.",
    500: "Something went wrong on our side. Please try again.",
}


def envelope(code: str, message: str, *, errors=None, detail=None) -> dict:
    body = {"success": False, "message": message, "error": code}
    if errors:
        body["errors"] = errors
    if detail is not None and settings.DEBUG:
        body["detail"] = detail
    return body


def error_response(
    status_code: int, code: str | None = None, message: str | None = None, *, errors=None, headers=None
) -> JsonResponse:
    """The envelope as a plain Django response, for views outside DRF."""
    body = envelope(
        code or STATUS_CODES.get(status_code, "ERROR"),
        message or STATUS_MESSAGES.get(status_code, "Error."),
        errors=errors,
    )
    response = JsonResponse(body, status=status_code)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, but a body nested too deeply for Python's decoder (a few
    kilobytes of ``[[[[…``) is a 400 like any other malformed JSON, not a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - the body is nested too deeply.") from None


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = STATUS_MESSAGES[413]
    default_code = "payload_too_large"


def _first_message(errors, prefix: str = "") -> str:
    if isinstance(errors, dict):
        for field, value in errors.items():
            name = "" if field == api_settings.NON_FIELD_ERRORS_KEY else f"{field}"
            return _first_message(value, f"{prefix}.{name}".strip(".") if name else prefix)
    if isinstance(errors, list) and errors:
        return _first_message(errors[0], prefix)
    text = str(errors)
    return f"{prefix}: {text}" if prefix else text


def _code_for(exc: exceptions.APIException, request) -> str:
    if isinstance(exc, exceptions.ValidationError):
        return "VALIDATION_ERROR"
    if isinstance(exc, exceptions.AuthenticationFailed):
        return "TOKEN_INVALID"  # the only credential checked by an authenticator is the JWT
    if isinstance(exc, exceptions.PermissionDenied) and str(exc.detail).startswith("CSRF Failed"):
        return "CSRF_FAILED"
    if isinstance(exc, exceptions.ParseError):
        content_type = getattr(request, "content_type", "") or ""
        return "INVALID_JSON" if "json" in content_type else "MALFORMED_REQUEST"
    return STATUS_CODES.get(exc.status_code, str(exc.default_code).upper())


def exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: every API error becomes the envelope."""
    request = context.get("request")
    if isinstance(exc, DomainError):
        return Response(
            envelope(exc.code, exc.message, errors=exc.errors),
            status=exc.status_code,
        )
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError(str(exc))
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: Django logs it, ApiErrorMiddleware shapes the 500

    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(max(1, int(exc.wait)))

    code = _code_for(exc, request)
    errors = None
    if isinstance(exc, exceptions.ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {api_settings.NON_FIELD_ERRORS_KEY: exc.detail}
        message = _first_message(errors)
    elif isinstance(exc, exceptions.Throttled):
        message = f"Too many requests. Try again in {headers.get('Retry-After', 'a few')} seconds."
    elif isinstance(exc, JWTInvalidToken):
        message = "The token is invalid or has expired."
    else:
        message = str(exc.detail) if not isinstance(exc.detail, (dict, list)) else STATUS_MESSAGES.get(exc.status_code)
    return Response(
        envelope(code, message, errors=errors, detail=exc.get_full_details()),
        status=exc.status_code,
        headers=headers,
    )


def is_api_request(request) -> bool:
    return request.path.startswith("/api/") or request.path == "/api"


def wants_json(request) -> bool:
    """HeyDoc's root routes serve HTML forms and JSON clients alike."""
    content_type = request.META.get("CONTENT_TYPE", "")
    accept = request.META.get("HTTP_ACCEPT", "")
    return "application/json" in content_type or ("application/json" in accept and "text/html" not in accept)


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: the envelope for API and JSON clients, Django's page otherwise."""
    if is_api_request(request) or wants_json(request):
        return error_response(
            403,
            "CSRF_FAILED",
            "CSRF check failed: send the csrftoken cookie's value in the X-CSRFToken header.",
        )
    from django.views.csrf import csrf_failure as django_csrf_failure

    return django_csrf_failure(request, reason=reason)


def api_path(route: str, view: Callable, name: str | None = None) -> list:
    """A route that answers with and without its trailing slash, for every method,
    without redirecting (a redirected POST would come back as a GET)."""
    route = route.strip("/")
    return [path(route, view, name=name), path(f"{route}/", view)]


class PageLimitPagination(PageNumberPagination):
    """``?page=1&limit=20``; the answer carries the total and the page count.

    A page past the end is empty (with the total), not an error; a page or limit
    that is not a positive integer is a VALIDATION_ERROR; limit is capped."""

    page_size = 20
    page_query_param = "page"
    page_size_query_param = "limit"
    max_page_size = 200

    def _positive_int(self, request, name: str, default: int) -> int:
        raw = request.query_params.get(name)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise exceptions.ValidationError({name: ["Must be a positive integer."]})
        return value

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.page_number = self._positive_int(request, self.page_query_param, 1)
        self.limit = min(self._positive_int(request, self.page_size_query_param, self.page_size), self.max_page_size)
        self.total = queryset.count() if hasattr(queryset, "count") and callable(queryset.count) else len(queryset)
        offset = (self.page_number - 1) * self.limit
        if offset >= self.total:
            return []
        return list(queryset[offset : offset + self.limit])

    def get_paginated_response(self, data):
        pages = (self.total + self.limit - 1) // self.limit
        return Response(
            {
                "success": True,
                "data": data,
                "pagination": {"page": self.page_number, "limit": self.limit, "total": self.total, "pages": pages},
            }
        )

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["success", "data", "pagination"],
            "properties": {
                "success": {"type": "boolean", "example": True},
                "data": schema,
                "pagination": {
                    "type": "object",
                    "properties": {
                        "page": {"type": "integer", "example": 1},
                        "limit": {"type": "integer", "example": 20},
                        "total": {"type": "integer", "example": 134},
                        "pages": {"type": "integer", "example": 7},
                    },
                },
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {"name": "page", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}},
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size, "default": self.page_size},
            },
        ]


# --- OpenAPI description of the envelope -------------------------------------------


class ErrorEnvelopeSerializer(serializers.Serializer):
    # No default: a field with one is optional in the schema, and every error has it.
    success = serializers.BooleanField(help_text="Always false.")
    message = serializers.CharField(help_text="Human-readable description.")
    error = serializers.CharField(
        help_text="Stable machine code: VALIDATION_ERROR, NOT_AUTHENTICATED, TOKEN_INVALID, "
        "INVALID_CREDENTIALS, PERMISSION_DENIED, CSRF_FAILED, NOT_FOUND, METHOD_NOT_ALLOWED, "
        "INVALID_JSON, PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, RATE_LIMITED, SERVER_ERROR, …"
    )
    errors = serializers.DictField(required=False, help_text="Field errors, for VALIDATION_ERROR: {field: [messages]}.")
    detail = serializers.JSONField(required=False, help_text="Raw exception detail; only when DEBUG is on.")


class SuccessSerializer(serializers.Serializer):
    success = serializers.BooleanField(help_text="Always true.")
    message = serializers.CharField(required=False)


_ERROR_DESCRIPTIONS = {
    400: "Bad request: VALIDATION_ERROR, INVALID_JSON, …",
    401: "NOT_AUTHENTICATED, TOKEN_INVALID or INVALID_CREDENTIALS",
    403: "PERMISSION_DENIED or CSRF_FAILED",
    404: "NOT_FOUND (also for another account's objects)",
    413: "PAYLOAD_TOO_LARGE",
    429: "RATE_LIMITED; see the Retry-After header",
}


def error_responses(*codes: int) -> dict:
    """``extend_schema(responses=…)`` entries for the envelope at these status codes."""
    return {code: OpenApiResponse(ErrorEnvelopeSerializer, description=_ERROR_DESCRIPTIONS[code]) for code in codes}
