"""HeyDoc's session routes at the site root (/login, /register, /logout) and the
password pages the reset email links to.

Each route serves an HTML form to browsers and JSON to API clients: a request with
a JSON body (or asking only for JSON) gets a JSON answer and the session cookie.
Form posts go through Django's CSRF check; JSON bodies can't be sent cross-site
without a CORS preflight, which only FRONTEND_ORIGINS pass, so they skip it. Only a
Content-Type of exactly application/json counts: a JSON-looking text/plain body, a
media-type parameter naming JSON or an Accept header are all a hostile page can send
freely, so such requests get the JSON answer but keep the CSRF check.
"""

import functools
import json
import zoneinfo

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from accounts import forms, services
from accounts.api.serializers import UserOutputSerializer
from heroshhi.api import error_response, wants_json
from heroshhi.errors import DomainError
from heroshhi.ratelimit import rate_limit_hit
from leads.models import Lead
from leads.selectors import contact_list, lead_analytics
from messaging.models import Message
from messaging.selectors import message_scope


class _BadBody(Exception):
    def __init__(self, response: JsonResponse):
        self.response = response


def _json_payload(request: HttpRequest) -> dict:
    try:
        payload = json.loads(request.body or b"{}")
    except RequestDataTooBig:
        raise _BadBody(error_response(413)) from None
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deeply
        raise _BadBody(error_response(400, "INVALID_JSON", "The body is not valid JSON.")) from None
    if not isinstance(payload, dict):
        raise _BadBody(error_response(400, "VALIDATION_ERROR", "The body must be a JSON object."))
    # HeyDoc clients may call the login name "username".
    if "email" not in payload and "username" in payload:
        payload["email"] = payload["username"]
    wrong_type = {key: ["Must be a string."] for key, value in payload.items() if not isinstance(value, str | None)}
    if wrong_type:
        field = next(iter(wrong_type))
        raise _BadBody(error_response(400, "VALIDATION_ERROR", f"{field}: Must be a string.", errors=wrong_type))
    return {key: value or "" for key, value in payload.items()}


def _form_errors_response(form) -> JsonResponse:
    errors = {field: [str(e) for e in errs] for field, errs in form.errors.items()}
    field, msgs = next(iter(errors.items()))
    return error_response(400, "VALIDATION_ERROR", f"{field}: {msgs[0]}", errors=errors)


def _rate_limited_json(retry_after: int) -> JsonResponse:
    return error_response(
        429,
        "RATE_LIMITED",
        f"Too many requests. Try again in {retry_after} seconds.",
        headers={"Retry-After": str(retry_after)},
    )


def _form_rate_limited(request: HttpRequest, form) -> bool:
    """Counts a form post against the auth budget; over it, the form says so."""
    usage = rate_limit_hit(request, "auth")
    if usage.limited:
        form.add_error(None, f"Too many attempts. Try again in {usage.retry_after // 60 + 1} minutes.")
    return usage.limited


def _form_status(form, limited: bool) -> int:
    return 429 if limited else 400 if form.is_bound and form.errors else 200


def _json_rate_limited(request: HttpRequest) -> JsonResponse | None:
    usage = rate_limit_hit(request, "auth")
    return _rate_limited_json(usage.retry_after) if usage.limited else None


def _user_json(user) -> dict:
    return UserOutputSerializer(user).data


def _json_view(request: HttpRequest, view):
    """``view`` without a CSRF check only for a real application/json body (which needs
    a CORS preflight cross-site); with it for anything else asking for JSON."""
    if request.content_type == "application/json":
        return view(request)
    return csrf_protect(view)(request)


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or "/"
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return "/"


@csrf_exempt
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST" and wants_json(request):
        return _json_view(request, _login_json)
    return _login_html(request)


def _login_json(request: HttpRequest) -> JsonResponse:
    if limited := _json_rate_limited(request):
        return limited
    try:
        form = forms.LoginForm(_json_payload(request))
    except _BadBody as bad:
        return bad.response
    if not form.is_valid():
        return _form_errors_response(form)
    try:
        user = services.session_check_login(**form.cleaned_data, request=request)
    except DomainError as exc:
        return error_response(exc.status_code, exc.code, exc.message)
    login(request, user)
    get_token(request)  # sets the csrftoken cookie the client echoes in X-CSRFToken
    return JsonResponse({"success": True, "message": "Login successful", "user": _user_json(user)})


@csrf_protect
def _login_html(request: HttpRequest) -> HttpResponse:
    form = forms.LoginForm(request.POST or None)
    limited = request.method == "POST" and _form_rate_limited(request, form)
    if request.method == "POST" and not limited and form.is_valid():
        try:
            user = services.session_check_login(**form.cleaned_data, request=request)
        except services.TwoFactorRequired as exc:
            form.add_error("code", exc.message)
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            login(request, user)
            return redirect(_safe_next(request))
    context = {"form": form, "next": _safe_next(request)}
    return render(request, "accounts/login.html", context, status=_form_status(form, limited))


@csrf_exempt
@require_http_methods(["GET", "POST"])
def register_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST" and wants_json(request):
        return _json_view(request, _register_json)
    return _register_html(request)


def _register_json(request: HttpRequest) -> JsonResponse:
    if limited := _json_rate_limited(request):
        return limited
    try:
        payload = _json_payload(request)
    except _BadBody as bad:
        return bad.response
    payload.setdefault("name", payload.get("username", ""))
    form = forms.RegisterForm(payload)
    if not form.is_valid():
        return _form_errors_response(form)
    try:
        user = _signup(form)
    except DomainError as exc:
        return error_response(exc.status_code, exc.code, exc.message, errors=exc.errors)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    get_token(request)
    return JsonResponse({"success": True, "message": "Registration successful", "user": _user_json(user)}, status=201)


@csrf_protect
def _register_html(request: HttpRequest) -> HttpResponse:
    form = forms.RegisterForm(request.POST or None)
    limited = request.method == "POST" and _form_rate_limited(request, form)
    if request.method == "POST" and not limited and form.is_valid():
        try:
            user = _signup(form)
        except DomainError as exc:
            for field, errs in (exc.errors or {None: [exc.message]}).items():
                for err in errs:
                    form.add_error(field if field in form.fields else None, err)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, f"Welcome to Heroshhi, {user.name or user.email}.")
            return redirect("/")
    return render(request, "accounts/register.html", {"form": form}, status=_form_status(form, limited))


def _signup(form: forms.RegisterForm):
    return services.account_signup(
        name=form.cleaned_data["name"],
        email=form.cleaned_data["email"],
        password=form.cleaned_data["password"],
        company_name=form.cleaned_data["company"],
    )


@require_http_methods(["GET", "POST"])
@csrf_exempt
def logout_view(request: HttpRequest) -> HttpResponse:
    # HeyDoc documents GET /logout; a forged logout only signs someone out.
    logout(request)
    if wants_json(request):
        return JsonResponse({"success": True, "message": "Logged out"})
    messages.info(request, "You have been logged out.")
    return redirect("/login")


@require_http_methods(["GET", "POST"])
def forgot_password_view(request: HttpRequest) -> HttpResponse:
    form = forms.ForgotPasswordForm(request.POST or None)
    limited = request.method == "POST" and _form_rate_limited(request, form)
    if request.method == "POST" and not limited and form.is_valid():
        services.password_reset_request(email=form.cleaned_data["email"])
        messages.info(request, "If an account exists for this email, a reset link has been sent.")
        return redirect("/login")
    return render(request, "accounts/forgot_password.html", {"form": form}, status=_form_status(form, limited))


@require_http_methods(["GET", "POST"])
def reset_password_view(request: HttpRequest) -> HttpResponse:
    form = forms.ResetPasswordForm(request.POST or None, initial={"token": request.GET.get("token", "")})
    limited = request.method == "POST" and _form_rate_limited(request, form)
    if request.method == "POST" and not limited and form.is_valid():
        try:
            services.password_reset_confirm(**form.cleaned_data)
        except DomainError as exc:
            field = "password" if exc.errors and "password" in exc.errors else None
            form.add_error(field, exc.message)
        else:
            messages.success(request, "Your password has been reset. You can log in now.")
            return redirect("/login")
    return render(request, "accounts/reset_password.html", {"form": form}, status=_form_status(form, limited))


def staff_page(view):
    """A dashboard page: login required, and dates and times read and shown in the
    account's time zone (forms parse naive times in it, templates render in it).

    An htmx request whose session has ended (a thread polled after the idle timeout)
    sends the whole page to the login, not the login form into the fragment."""

    protected = login_required(view)

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            if getattr(request, "htmx", False):
                page = request.htmx.current_url_abs_path or "/"
                return HttpResponseClientRedirect(f"{settings.LOGIN_URL}?{urlencode({'next': page})}")
            return protected(request, *args, **kwargs)
        with timezone.override(zoneinfo.ZoneInfo(request.user.account.time_zone)):
            return view(request, *args, **kwargs)

    return wrapped


WAITING_ON_HOME = 5


@staff_page
@require_http_methods(["GET"])
def home_view(request: HttpRequest) -> HttpResponse:
    """Today at a glance, from the same selectors as the API's analytics and contacts."""
    user = request.user
    today = timezone.localdate()
    analytics = lead_analytics(user=user, date_from=today, date_to=today)
    unread = message_scope(user=user).filter(direction=Message.Direction.INBOUND, is_read=False)
    unread_leads = unread.order_by().values("lead_id")
    context = {
        "today": today,
        "analytics": analytics,
        "new_leads_today": analytics["createdPerDay"][0]["count"],
        "messages_sent_today": analytics["messages"]["outbound"],
        "unread_conversations": unread_leads.distinct().count(),
        "waiting": list(contact_list(user=user).filter(pk__in=unread_leads)[:WAITING_ON_HOME]),
        "statuses": [(value, label, analytics["byStatus"][value]) for value, label in Lead.Status.choices],
    }
    return render(request, "accounts/home.html", context)
