"""HeyDoc's session routes at the site root (/login, /register, /logout), the HTML
forms behind them, CSRF for session clients, session timeouts and the password pages."""

import json
import time

import pytest
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.middleware import _SEEN, _STARTED
from accounts.models import Account, User
from accounts.tests.helpers import csrf_from_form, reset_token_from

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "Brand-New-Secret-2026"


def json_post(client: Client, path: str, payload, **extra):
    return client.post(path, json.dumps(payload), content_type="application/json", **extra)


def is_logged_in(client: Client, user: User | None = None) -> bool:
    r = client.get("/api/auth/me")
    if r.status_code == 401:
        return False
    assert r.status_code == 200, r.content
    return user is None or r.json()["user"]["id"] == str(user.pk)


def form_post(client: Client, path: str, data: dict, page: str | None = None):
    """Posts an HTML form the way a browser does: the CSRF token comes from the page."""
    token = csrf_from_form(client.get(page or path).content)
    return client.post(path, {**data, "csrfmiddlewaretoken": token})


@pytest.fixture
def browser() -> Client:
    return Client(enforce_csrf_checks=True)


# --- JSON login ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/login/"])
def test_json_login_sets_the_session_and_csrf_cookies(browser, owner, password, path):
    r = json_post(browser, path, {"email": owner.email, "password": password})

    assert r.status_code == 200, r.content
    body = r.json()
    assert body["success"] is True
    assert body["user"]["email"] == owner.email
    assert r.cookies["sessionid"].value
    assert r.cookies["sessionid"]["httponly"]
    assert r.cookies["csrftoken"].value
    assert is_logged_in(browser, owner)


def test_json_login_accepts_username_for_the_email(browser, owner, password):
    r = json_post(browser, "/login", {"username": owner.email, "password": password})

    assert r.status_code == 200, r.content
    assert is_logged_in(browser, owner)


def test_json_login_with_a_wrong_password_is_refused(browser, owner):
    r = json_post(browser, "/login", {"email": owner.email, "password": "not-the-password-1"})

    assert r.status_code == 401
    assert r.json() == {**r.json(), "success": False, "error": "INVALID_CREDENTIALS"}
    assert r.json()["message"]
    assert "sessionid" not in r.cookies
    assert not is_logged_in(browser)


def test_json_login_of_a_deactivated_user_is_refused(browser, owner, password):
    owner.is_active = False
    owner.save()

    r = json_post(browser, "/login", {"email": owner.email, "password": password})

    assert r.status_code == 401
    assert r.json()["error"] == "INVALID_CREDENTIALS"


def test_json_login_with_malformed_json_is_refused(browser, owner):
    r = browser.post("/login", '{"email": "owner@acme.test", ', content_type="application/json")

    assert r.status_code == 400
    assert r.json()["success"] is False
    assert r.json()["error"] == "INVALID_JSON"


@pytest.mark.parametrize(
    "payload",
    [
        [],
        "text",
        {"email": "not-an-email", "password": "x"},
        {"email": None},
        {"email": ["owner@acme.test"], "password": "Correct-Horse-42!"},
        {"email": {"$ne": ""}, "password": "Correct-Horse-42!"},
    ],
)
def test_json_login_with_bad_fields_is_a_validation_error(browser, owner, payload):
    r = json_post(browser, "/login", payload)

    assert r.status_code == 400, r.content
    assert r.json()["success"] is False
    assert r.json()["error"] == "VALIDATION_ERROR"


def test_a_post_is_never_redirected(browser, owner, password):
    # The slashless and slashed paths both answer the POST itself (a redirect would
    # turn it into a GET).
    for path in ("/login", "/login/", "/register", "/register/", "/logout", "/logout/"):
        r = json_post(browser, path, {})
        assert r.status_code not in {301, 302, 307, 308}, path


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain; format=application/json", "application/x-www-form-urlencoded"],
)
@pytest.mark.parametrize("path", ["/login", "/register"])
def test_a_cross_site_simple_request_cannot_log_in(browser, owner, password, content_type, path):
    # What a hostile page can send without a CORS preflight: a "simple" content type,
    # and an Accept header asking for JSON. Without a CSRF token it must not log the
    # victim's browser in to the attacker's account (login CSRF).
    email = owner.email if path == "/login" else "mallory@evil.test"
    body = json.dumps({"email": email, "password": password, "name": "Mallory"})

    r = browser.post(path, body, content_type=content_type, HTTP_ACCEPT="application/json")

    assert r.status_code == 403, r.content
    assert r.json()["error"] == "CSRF_FAILED"
    assert "sessionid" not in r.cookies
    assert not is_logged_in(browser)
    assert User.objects.count() == 1


# --- HTML login form -----------------------------------------------------------------


def test_the_login_page_renders_a_form_with_a_csrf_token(browser):
    r = browser.get("/login")

    assert r.status_code == 200
    assert "text/html" in r["Content-Type"]
    assert csrf_from_form(r.content)
    assert r.cookies["csrftoken"].value


def test_html_login_redirects_home(browser, owner, password):
    r = form_post(browser, "/login", {"email": owner.email, "password": password})

    assert r.status_code == 302
    assert r["Location"] == "/"
    assert is_logged_in(browser, owner)
    home = browser.get("/")
    assert home.status_code == 200
    assert owner.name in home.content.decode()


def test_html_login_without_a_csrf_token_is_forbidden(browser, owner, password):
    browser.get("/login")

    r = browser.post("/login", {"email": owner.email, "password": password})

    assert r.status_code == 403
    assert not is_logged_in(browser)


def test_html_login_with_a_wrong_password_shows_the_form_again(browser, owner):
    r = form_post(browser, "/login", {"email": owner.email, "password": "not-the-password-1"})

    assert r.status_code == 400
    page = r.content.decode()
    assert "Invalid email or password" in page
    assert 'name="email"' in page
    assert not is_logged_in(browser)


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/api/docs/", "/api/docs/"),
        ("/leads?status=hot", "/leads?status=hot"),
        ("https://evil.example/phish", "/"),
        ("//evil.example/phish", "/"),
        ("http://testserver.evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/\\evil.example/phish", "/"),
    ],
)
def test_html_login_follows_next_only_within_the_site(browser, owner, password, next_url, expected, many_auth_requests):
    r = form_post(browser, "/login", {"email": owner.email, "password": password, "next": next_url})

    assert r.status_code == 302
    assert r["Location"] == expected


def test_html_login_keeps_next_from_the_query_string(browser, owner, password):
    token = csrf_from_form(browser.get("/login?next=/api/docs/").content)

    r = browser.post(
        "/login?next=/api/docs/", {"email": owner.email, "password": password, "csrfmiddlewaretoken": token}
    )

    assert r["Location"] == "/api/docs/"


def test_the_home_page_sends_visitors_to_the_login(client):
    r = client.get("/")

    assert r.status_code == 302
    assert r["Location"].startswith("/login")


# --- Register ------------------------------------------------------------------------


def test_json_register_creates_a_workspace_and_logs_in(browser):
    r = json_post(
        browser,
        "/register",
        {"name": "Sam Founder", "email": "sam@newco.test", "password": NEW_PASSWORD, "company": "NewCo"},
    )

    assert r.status_code == 201, r.content
    assert r.json()["success"] is True
    user = User.objects.get(email="sam@newco.test")
    assert user.role == User.Role.ADMIN
    assert user.account.name == "NewCo"
    assert r.cookies["sessionid"].value
    assert is_logged_in(browser, user)


def test_json_register_with_a_taken_email_is_refused(browser, owner):
    r = json_post(browser, "/register", {"name": "Copy", "email": owner.email.upper(), "password": NEW_PASSWORD})

    assert r.status_code == 400
    assert r.json()["error"] == "VALIDATION_ERROR"
    assert "email" in r.json()["errors"]
    assert User.objects.filter(email__iexact=owner.email).count() == 1
    assert not is_logged_in(browser)


def test_json_register_with_a_weak_password_is_refused(browser):
    r = json_post(browser, "/register", {"name": "Sam", "email": "sam@newco.test", "password": "password"})

    assert r.status_code == 400
    assert r.json()["errors"]["password"]
    assert not User.objects.exists()
    assert not Account.objects.exists()


def test_html_register_redirects_home_logged_in(browser):
    r = form_post(
        browser, "/register", {"name": "Sam", "email": "sam@newco.test", "password": NEW_PASSWORD, "company": "NewCo"}
    )

    assert r.status_code == 302
    assert r["Location"] == "/"
    user = User.objects.get(email="sam@newco.test")
    assert user.role == User.Role.ADMIN
    assert is_logged_in(browser, user)


def test_html_register_with_a_taken_email_shows_the_error(browser, owner):
    r = form_post(browser, "/register", {"name": "Copy", "email": owner.email, "password": NEW_PASSWORD})

    assert r.status_code == 400
    assert "already exists" in r.content.decode()
    assert not is_logged_in(browser)


def test_html_register_without_a_csrf_token_is_forbidden(browser):
    browser.get("/register")

    r = browser.post("/register", {"name": "Sam", "email": "sam@newco.test", "password": NEW_PASSWORD})

    assert r.status_code == 403
    assert not User.objects.exists()


# --- Logout --------------------------------------------------------------------------


@pytest.fixture
def logged_in(browser, owner, password) -> Client:
    r = json_post(browser, "/login", {"email": owner.email, "password": password})
    assert r.status_code == 200, r.content
    assert is_logged_in(browser, owner)
    return browser


def test_json_logout_ends_the_session(logged_in):
    r = logged_in.get("/logout", HTTP_ACCEPT="application/json")

    assert r.status_code == 200
    assert r.json()["success"] is True
    assert not is_logged_in(logged_in)


def test_logout_from_a_browser_goes_to_the_login_page(logged_in):
    r = logged_in.get("/logout")

    assert r.status_code == 302
    assert r["Location"] == "/login"
    assert not is_logged_in(logged_in)


def test_a_stolen_session_cookie_is_dead_after_logout(logged_in):
    cookie = logged_in.cookies["sessionid"].value
    logged_in.get("/logout", HTTP_ACCEPT="application/json")
    thief = Client()
    thief.cookies["sessionid"] = cookie

    assert not is_logged_in(thief)


# --- CSRF for session-authenticated API calls ----------------------------------------


def test_an_unsafe_api_call_with_a_session_needs_the_csrf_header(logged_in, owner):
    r = logged_in.post("/api/auth/2fa/setup")

    assert r.status_code == 403
    assert r.json()["success"] is False
    assert r.json()["error"] == "CSRF_FAILED"
    assert not User.objects.get(pk=owner.pk).totp_secret


def test_an_unsafe_api_call_with_a_session_and_the_csrf_header_works(logged_in, owner):
    token = logged_in.cookies["csrftoken"].value

    r = logged_in.post("/api/auth/2fa/setup", HTTP_X_CSRFTOKEN=token)

    assert r.status_code == 200, r.content
    assert User.objects.get(pk=owner.pk).totp_secret == r.json()["secret"]


def test_a_wrong_csrf_header_is_refused(logged_in):
    r = logged_in.post("/api/auth/2fa/setup", HTTP_X_CSRFTOKEN="x" * 32)

    assert r.status_code == 403
    assert r.json()["error"] == "CSRF_FAILED"


def test_bearer_clients_need_no_csrf_token(owner):
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(owner)}")

    assert client.post("/api/auth/2fa/setup").status_code == 200


# --- Session timeouts ----------------------------------------------------------------


@pytest.fixture
def short_sessions(settings):
    settings.SESSION_IDLE_TIMEOUT = 600
    settings.SESSION_ABSOLUTE_TIMEOUT = 3600
    return settings


def set_session(client: Client, **values) -> None:
    session = client.session
    for key, value in values.items():
        session[key] = value
    session.save()


def test_a_session_idle_too_long_ends(logged_in, short_sessions):
    now = int(time.time())
    set_session(logged_in, **{_STARTED: now - 700, _SEEN: now - short_sessions.SESSION_IDLE_TIMEOUT - 5})

    assert not is_logged_in(logged_in)
    assert logged_in.get("/").status_code == 302
    # The session is gone for good, not just for one request.
    set_session(logged_in, **{_STARTED: now, _SEEN: now})
    assert not is_logged_in(logged_in)


def test_a_session_in_use_stays_and_its_idle_clock_restarts(logged_in, short_sessions):
    now = int(time.time())
    set_session(logged_in, **{_STARTED: now - 700, _SEEN: now - short_sessions.SESSION_IDLE_TIMEOUT + 30})

    assert is_logged_in(logged_in)
    assert logged_in.session[_SEEN] >= now
    assert logged_in.session[_STARTED] == now - 700


def test_a_session_older_than_the_absolute_timeout_ends_however_active(logged_in, short_sessions):
    now = int(time.time())
    set_session(logged_in, **{_STARTED: now - short_sessions.SESSION_ABSOLUTE_TIMEOUT - 5, _SEEN: now})

    assert not is_logged_in(logged_in)


def test_a_session_just_under_the_absolute_timeout_lives(logged_in, short_sessions):
    now = int(time.time())
    set_session(logged_in, **{_STARTED: now - short_sessions.SESSION_ABSOLUTE_TIMEOUT + 30, _SEEN: now})

    assert is_logged_in(logged_in)


def test_an_idle_html_session_is_sent_to_the_login(browser, owner, password, short_sessions):
    form_post(browser, "/login", {"email": owner.email, "password": password})
    assert browser.get("/").status_code == 200
    now = int(time.time())
    set_session(browser, **{_SEEN: now - short_sessions.SESSION_IDLE_TIMEOUT - 5})

    r = browser.get("/")

    assert r.status_code == 302
    assert r["Location"].startswith("/login")


# --- Password pages ------------------------------------------------------------------


def test_the_forgot_password_page_sends_the_email(browser, owner, mailoutbox):
    r = form_post(browser, "/forgot-password", {"email": owner.email})

    assert r.status_code == 302
    assert r["Location"] == "/login"
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == [owner.email]


def test_the_reset_page_sets_a_new_password(browser, owner, password, mailoutbox, many_auth_requests):
    json_post(Client(), "/api/auth/forgot-password", {"email": owner.email})
    token = reset_token_from(mailoutbox[-1])
    page = browser.get(f"/reset-password?token={token}")
    assert page.status_code == 200
    assert f'value="{token}"' in page.content.decode()

    r = browser.post(
        "/reset-password",
        {"token": token, "password": NEW_PASSWORD, "csrfmiddlewaretoken": csrf_from_form(page.content)},
    )

    assert r.status_code == 302
    assert r["Location"] == "/login"
    assert json_post(Client(), "/login", {"email": owner.email, "password": NEW_PASSWORD}).status_code == 200
    assert json_post(Client(), "/login", {"email": owner.email, "password": password}).status_code == 401
    # The link is used up.
    again = form_post(
        browser,
        "/reset-password",
        {"token": token, "password": "Another-Secret-1234"},
        page=f"/reset-password?token={token}",
    )
    assert again.status_code == 400
    assert "invalid or has expired" in again.content.decode()
    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)


def test_a_password_reset_ends_the_sessions_opened_before(logged_in, owner, mailoutbox):
    json_post(Client(), "/api/auth/forgot-password", {"email": owner.email})
    token = reset_token_from(mailoutbox[-1])

    r = json_post(Client(), "/api/auth/reset-password", {"token": token, "password": NEW_PASSWORD})

    assert r.status_code == 200, r.content
    assert not is_logged_in(logged_in)


def test_deactivating_a_user_ends_their_session(logged_in, owner):
    owner.is_active = False
    owner.save()

    assert not is_logged_in(logged_in)


def test_the_reset_page_refuses_a_weak_password(browser, owner, password, mailoutbox):
    json_post(Client(), "/api/auth/forgot-password", {"email": owner.email})
    token = reset_token_from(mailoutbox[-1])

    r = form_post(
        browser, "/reset-password", {"token": token, "password": "password"}, page=f"/reset-password?token={token}"
    )

    assert r.status_code in {200, 400}
    assert 'class="field-error"' in r.content.decode()
    owner.refresh_from_db()
    assert owner.check_password(password)


@pytest.mark.parametrize("value", [{}, [], 123, True])
def test_session_login_refuses_non_string_fields(value, owner):
    r = Client().post("/login", {"email": owner.email, "password": value}, content_type="application/json")

    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "VALIDATION_ERROR"
    assert body["errors"] == {"password": ["Must be a string."]}
    assert "_auth_user_id" not in Client().session
