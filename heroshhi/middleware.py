from django.conf import settings
from django.shortcuts import render

from heroshhi.api import error_response, is_api_request, wants_json


class ApiErrorMiddleware:
    """Shapes errors that Django answers before or outside DRF on API routes (an
    unknown URL, a CSRF failure, a bug's 500) into the envelope."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and is_api_request(request)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            shaped = error_response(response.status_code)
            # Only the body changes: the headers the inner layers added (security
            # headers, CORS, Allow, Retry-After, WWW-Authenticate, Vary) and cookies stay.
            for header, value in response.items():
                if header.lower() not in ("content-type", "content-length"):
                    shaped[header] = value
            shaped.cookies = response.cookies
            return shaped
        return response


class RequestSizeLimitMiddleware:
    """Refuses an oversized body with 413 before anything reads it.

    DRF's parsers read the request stream directly, so Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE does not guard JSON bodies; this does. File
    uploads (multipart) get their own, larger limit.

    It is the last middleware: no middleware reads the body before the views (CSRF
    reads it in process_view, which runs after this), and its 413 then passes out
    through every other one and gets the security and CORS headers."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(400, "MALFORMED_REQUEST", "Invalid Content-Length header.")
        multipart = request.META.get("CONTENT_TYPE", "").startswith("multipart/form-data")
        limit = settings.MAX_UPLOAD_SIZE if multipart else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if length > limit:
            if is_api_request(request) or wants_json(request):
                return error_response(
                    413, "PAYLOAD_TOO_LARGE", f"The request body is too large (limit {limit // 1024} KiB)."
                )
            # A dashboard form (a CSV upload): a page that says so, in the layout.
            return render(request, "413.html", {"limit": limit}, status=413)
        return self.get_response(request)
