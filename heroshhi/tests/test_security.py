"""Security headers on every kind of response, CORS per origin, password hashing,
HTML stripping of free text, and secrets encrypted at rest."""

import html
import json

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.hashers import identify_hasher
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import Client

import heroshhi.crypto
from accounts.models import User
from heroshhi.text import clean_text

FRONTEND = "https://app.example.com"
STRANGER = "https://evil.example.net"


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "auth": "1000/15m", "standard": "1000/15m"}


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


# --- security headers -----------------------------------------------------------------


def _responses(client, owner_client) -> dict:
    return {
        "api json": owner_client.get("/api/auth/me"),
        "api 401": client.get("/api/auth/me"),
        "api 400": client.post("/api/auth/login", "{}", content_type="application/json"),
        "api 404": client.get("/api/nope"),
        "api 405": client.get("/api/auth/login"),
        "api 413": client.post("/api/auth/login", b"x" * (3 * 1024 * 1024), content_type="application/json"),
        "html": client.get("/login"),
        "html 404": client.get("/nope"),
        "heydoc json": client.post("/login", "{}", content_type="application/json"),
        "redirect": client.get("/"),
    }


@pytest.mark.django_db
def test_security_headers_on_every_kind_of_response(client, owner_client):
    for kind, response in _responses(client, owner_client).items():
        assert response["X-Content-Type-Options"] == "nosniff", kind
        assert response["X-Frame-Options"] == "DENY", kind
        assert response["Referrer-Policy"], kind
        assert response["Referrer-Policy"] in {
            "no-referrer",
            "same-origin",
            "strict-origin",
            "strict-origin-when-cross-origin",
        }
        csp = response["Content-Security-Policy"]
        directives = {d.strip().split(" ", 1)[0]: d.strip() for d in csp.split(";") if d.strip()}
        assert directives["object-src"] == "object-src 'none'", kind
        assert directives["base-uri"] == "base-uri 'none'", kind
        assert directives["frame-ancestors"] == "frame-ancestors 'none'", kind
        assert "unsafe-inline" not in directives.get("script-src", directives.get("default-src", "")), kind


@pytest.mark.django_db
@pytest.mark.urls("heroshhi.tests.urls")
def test_security_headers_on_a_server_error(client):
    response = client.get("/api/test-boom")
    assert response.status_code == 500
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


@pytest.mark.django_db
def test_the_response_kinds_are_what_they_claim(client, owner_client):
    # Keeps the header test honest: each sample really is the kind it is named after.
    statuses = {kind: r.status_code for kind, r in _responses(client, owner_client).items()}
    assert statuses == {
        "api json": 200,
        "api 401": 401,
        "api 400": 400,
        "api 404": 404,
        "api 405": 405,
        "api 413": 413,
        "html": 200,
        "html 404": 404,
        "heydoc json": 400,
        "redirect": 302,
    }


@pytest.mark.django_db
def test_no_hsts_in_development(client, owner_client):
    for response in (client.get("/login"), owner_client.get("/api/auth/me"), client.get("/login", secure=True)):
        assert "Strict-Transport-Security" not in response


@pytest.mark.django_db
def test_development_serves_plain_http_without_redirect(client):
    response = client.get("/login")
    assert response.status_code == 200


# --- CORS -------------------------------------------------------------------------------


@pytest.fixture
def frontend_only(settings):
    settings.CORS_ALLOWED_ORIGINS = [FRONTEND]
    settings.CORS_ALLOW_ALL_ORIGINS = False


def _preflight(client, path, origin, method="POST"):
    return client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD=method,
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/auth/login", "/api/auth/me", "/api/users"])
def test_preflight_from_the_frontend_is_allowed(client, frontend_only, path):
    response = _preflight(client, path, FRONTEND)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == FRONTEND
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert "authorization" in response["Access-Control-Allow-Headers"].lower()


@pytest.mark.django_db
def test_requests_from_the_frontend_get_the_allow_origin_header(client, owner_client, frontend_only, owner, password):
    me = owner_client.get("/api/auth/me", HTTP_ORIGIN=FRONTEND)
    assert me.status_code == 200
    assert me["Access-Control-Allow-Origin"] == FRONTEND

    login = client.post(
        "/api/auth/login",
        json.dumps({"email": owner.email, "password": password}),
        content_type="application/json",
        HTTP_ORIGIN=FRONTEND,
    )
    assert login.status_code == 200
    assert login["Access-Control-Allow-Origin"] == FRONTEND
    assert "Retry-After" in login["Access-Control-Expose-Headers"]


@pytest.mark.django_db
def test_error_answers_to_the_frontend_are_readable_by_it(client, frontend_only):
    # Without the header the browser hides the envelope from the frontend's code.
    for response in (
        client.get("/api/auth/me", HTTP_ORIGIN=FRONTEND),
        client.get("/api/nope", HTTP_ORIGIN=FRONTEND),
        client.post("/api/auth/login", "{", content_type="application/json", HTTP_ORIGIN=FRONTEND),
        client.post("/api/auth/login", b"x" * (3 * 1024 * 1024), content_type="application/json", HTTP_ORIGIN=FRONTEND),
    ):
        assert response.status_code >= 400
        assert response.get("Access-Control-Allow-Origin") == FRONTEND, (response.status_code, dict(response.headers))


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/auth/login", "/api/auth/me", "/api/users", "/api/nope"])
def test_other_origins_get_no_cors_headers(client, owner_client, frontend_only, path):
    preflight = _preflight(client, path, STRANGER)
    assert "Access-Control-Allow-Origin" not in preflight
    assert "Access-Control-Allow-Methods" not in preflight
    response = owner_client.get(path, HTTP_ORIGIN=STRANGER)
    assert "Access-Control-Allow-Origin" not in response


@pytest.mark.django_db
def test_lookalike_origins_are_refused(client, owner_client, frontend_only):
    for origin in ("http://app.example.com", "https://app.example.com.evil.net", "https://evilapp.example.com", "null"):
        assert "Access-Control-Allow-Origin" not in _preflight(client, "/api/auth/login", origin), origin
        assert "Access-Control-Allow-Origin" not in owner_client.get("/api/auth/me", HTTP_ORIGIN=origin), origin


@pytest.mark.django_db
def test_no_cors_for_anyone_when_no_frontend_is_configured(client, settings):
    settings.CORS_ALLOWED_ORIGINS = []
    settings.CORS_ALLOW_ALL_ORIGINS = False
    assert "Access-Control-Allow-Origin" not in _preflight(client, "/api/auth/login", FRONTEND)


@pytest.mark.django_db
@pytest.mark.parametrize("origin", [FRONTEND, STRANGER, "https://hooks.zapier.example"])
def test_webhooks_are_open_to_any_origin(client, frontend_only, origin):
    preflight = _preflight(client, "/api/webhooks/anything", origin)
    assert preflight.status_code == 200
    assert preflight["Access-Control-Allow-Origin"] == origin
    assert "POST" in preflight["Access-Control-Allow-Methods"]

    response = client.post("/api/webhooks/anything", "{}", content_type="application/json", HTTP_ORIGIN=origin)
    assert response.get("Access-Control-Allow-Origin") == origin


@pytest.mark.django_db
def test_the_webhook_exception_is_only_for_the_webhooks_prefix(client, frontend_only):
    for path in ("/api/webhooksfoo", "/api/auth/webhooks/x", "/webhooks/x"):
        assert "Access-Control-Allow-Origin" not in _preflight(client, path, STRANGER), path


@pytest.mark.django_db
def test_no_cors_outside_the_api(client, frontend_only):
    assert "Access-Control-Allow-Origin" not in _preflight(client, "/login", FRONTEND)


# --- passwords ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_passwords_are_hashed(owner, password):
    stored = User.objects.get(pk=owner.pk).password
    assert password not in stored
    assert identify_hasher(stored).algorithm in {"pbkdf2_sha256", "argon2", "bcrypt_sha256", "scrypt"}
    assert owner.check_password(password)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/api/auth/signup", {"name": "Sam Signup", "email": "sam@signup.test", "password": "Plain-Text-Pass-77"}),
        ("/register", {"name": "Rita Register", "email": "rita@register.test", "password": "Plain-Text-Pass-77"}),
    ],
)
def test_signed_up_passwords_are_hashed(client, path, payload):
    response = client.post(path, json.dumps(payload), content_type="application/json")
    assert response.status_code == 201, response.content
    user = User.objects.get(email=payload["email"])
    assert payload["password"] not in user.password
    identify_hasher(user.password)
    assert user.check_password(payload["password"])


@pytest.mark.django_db
@pytest.mark.parametrize("weak", ["short1!", "password1234", "1234567890123", "sam@signup.test"])
def test_weak_passwords_are_refused(client, weak):
    payload = {"name": "Sam Signup", "email": "sam@signup.test", "password": weak}
    response = client.post("/api/auth/signup", json.dumps(payload), content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "VALIDATION_ERROR"
    assert not User.objects.filter(email="sam@signup.test").exists()


# --- free text -----------------------------------------------------------------------------


def _encoded(text: str, *, times: int) -> str:
    for _ in range(times):
        text = html.escape(text)
    return text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<script>alert(1)</script>Hello", "Hello"),
        ('Hi <b onclick="steal()">there</b>', "Hi there"),
        ('<img src=x onerror="alert(1)">Pic', "Pic"),
        ('<a href="javascript:alert(1)">link</a>', "link"),
        ("<style>body{display:none}</style>Text", "Text"),
        ("  plain text  ", "plain text"),
        ("a < b && c > d", "a < b && c > d"),
        ('Tom & Jerry\'s "show"', 'Tom & Jerry\'s "show"'),
        ("नमस्ते 👋", "नमस्ते 👋"),
        ("", ""),
        (None, ""),
    ],
)
def test_clean_text_strips_html(raw, expected):
    assert clean_text(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt;",
        "&lt;img src=x onerror=alert(1)&gt;",
        "<scr<script>ipt>alert(1)</script>",
        "&#60;script&#62;alert(1)&#60;/script&#62;",
        _encoded("<script>alert(1)</script>", times=15),
    ],
)
def test_clean_text_never_returns_markup(raw):
    # Entity-encoded tags must not come back as live tags once decoded.
    cleaned = clean_text(raw)
    assert "<script" not in cleaned.lower()
    assert "<img" not in cleaned.lower()


@pytest.mark.parametrize(
    "raw",
    [
        "&lt;script&gt;alert(1)&lt;/script&gt;Hi",
        "<b>bold</b> &amp; <i>italic</i>",
        "a < b && c > d",
        "  spaced  ",
        "&#60;img src=x onerror=alert(1)&#62;",
    ],
)
def test_clean_text_is_idempotent(raw):
    cleaned = clean_text(raw)
    assert clean_text(cleaned) == cleaned


# --- secrets at rest -------------------------------------------------------------------------


@pytest.fixture
def fresh_fernet():
    heroshhi.crypto._fernet.cache_clear()
    yield
    heroshhi.crypto._fernet.cache_clear()


def _stored_secret(user) -> str:
    pk = User._meta.pk.get_db_prep_value(user.pk, connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT totp_secret FROM accounts_user WHERE id = %s", [pk])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_encrypted_field_round_trips_and_stores_ciphertext(owner, fresh_fernet):
    owner.totp_secret = "JBSWY3DPEHPK3PXP"
    owner.save()
    stored = _stored_secret(owner)
    assert stored
    assert "JBSWY3DPEHPK3PXP" not in stored
    assert stored.startswith("gAAAAA")  # a Fernet token
    assert User.objects.get(pk=owner.pk).totp_secret == "JBSWY3DPEHPK3PXP"

    owner.save()
    assert _stored_secret(owner) != stored  # a fresh IV every time


@pytest.mark.django_db
def test_empty_secret_stays_empty(owner, fresh_fernet):
    owner.totp_secret = ""
    owner.save()
    assert _stored_secret(owner) == ""
    assert User.objects.get(pk=owner.pk).totp_secret == ""


@pytest.mark.django_db
def test_a_malformed_key_is_improperly_configured(settings, fresh_fernet):
    settings.FIELD_ENCRYPTION_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured):
        heroshhi.crypto.encrypt("secret")


@pytest.mark.django_db
def test_the_system_check_reports_a_malformed_key(settings, fresh_fernet):
    from heroshhi.checks import check_field_encryption_key

    settings.FIELD_ENCRYPTION_KEYS = ["not-a-fernet-key"]
    assert [e.id for e in check_field_encryption_key(None)] == ["heroshhi.E003"]
    heroshhi.crypto._fernet.cache_clear()
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    assert check_field_encryption_key(None) == []


@pytest.mark.django_db
def test_a_wrong_key_cannot_read_the_secret(owner, settings, fresh_fernet):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    owner.totp_secret = "JBSWY3DPEHPK3PXP"
    owner.save()

    heroshhi.crypto._fernet.cache_clear()
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ImproperlyConfigured):
        User.objects.get(pk=owner.pk)


@pytest.mark.django_db
def test_key_rotation_keeps_old_secrets_readable(owner, settings, fresh_fernet):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old_key]
    owner.totp_secret = "OLDSECRETOLDSECRET"
    owner.save()

    heroshhi.crypto._fernet.cache_clear()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    user = User.objects.get(pk=owner.pk)
    assert user.totp_secret == "OLDSECRETOLDSECRET"

    # Saved again, it is encrypted with the new key: the old one can be dropped.
    user.save()
    heroshhi.crypto._fernet.cache_clear()
    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    assert User.objects.get(pk=owner.pk).totp_secret == "OLDSECRETOLDSECRET"
    assert Fernet(new_key).decrypt(_stored_secret(owner).encode()) == b"OLDSECRETOLDSECRET"
