"""Every error of every /api/ route is `{success: false, message, error}` with a stable
machine code, whatever went wrong and wherever it was caught; success answers carry
`success: true`."""

import json

import pytest
from django.test import Client

from heroshhi.tests.urls import SECRET_TEXT, domain_errors

LOGIN = "/api/auth/login"


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "auth": "1000/15m", "standard": "1000/15m"}


@pytest.fixture
def client():
    # A bug must come back as the client would see it, not as an exception in the test.
    return Client(raise_request_exception=False)


def assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert body["success"] is False
    assert body["error"] == code
    assert isinstance(body["message"], str)
    assert body["message"].strip()
    assert "detail" not in body  # DEBUG is off in tests
    return body


def post_json(client, path: str, raw: str | bytes, content_type: str = "application/json"):
    return client.post(path, raw, content_type=content_type)


# --- malformed and mistyped bodies ----------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "raw",
    [
        '{"email": "owner@acme.test", "password": ',
        "{'email': 'single@quotes.test'}",
        "not json at all",
        '{"email": "a@b.test"} trailing',
        b"\xff\xfe\x00garbage",
    ],
    ids=["truncated", "single-quotes", "text", "trailing-garbage", "not-utf8"],
)
def test_malformed_json_is_400_invalid_json(client, raw):
    assert_envelope(post_json(client, LOGIN, raw), 400, "INVALID_JSON")


@pytest.mark.django_db
def test_malformed_json_to_heydoc_login_is_400_invalid_json(client):
    assert_envelope(post_json(client, "/login", '{"email": '), 400, "INVALID_JSON")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "raw",
    ["[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000],
    ids=["nested-arrays", "nested-objects"],
)
@pytest.mark.parametrize("path", [LOGIN, "/login"])
def test_deeply_nested_json_is_400_not_500(client, path, raw):
    # Small enough to pass the size limit, deep enough to exhaust the parser's stack.
    assert_envelope(post_json(client, path, raw), 400, "INVALID_JSON")


@pytest.mark.django_db
def test_json_array_body_is_validation_error(client):
    body = assert_envelope(post_json(client, LOGIN, '[{"email": "owner@acme.test"}]'), 400, "VALIDATION_ERROR")
    assert body["errors"]
    assert isinstance(body["errors"], dict)


@pytest.mark.django_db
def test_wrong_types_are_validation_error_with_field_errors(client):
    body = assert_envelope(
        post_json(client, LOGIN, json.dumps({"email": 123, "password": {}})), 400, "VALIDATION_ERROR"
    )
    assert set(body["errors"]) == {"email", "password"}
    for messages in body["errors"].values():
        assert messages
        assert all(isinstance(m, str) and m for m in messages)


@pytest.mark.django_db
def test_missing_fields_are_validation_error(client):
    body = assert_envelope(post_json(client, LOGIN, "{}"), 400, "VALIDATION_ERROR")
    assert set(body["errors"]) == {"email", "password"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload",
    [
        [],
        "just a string",
        42,
        None,
        {"email": ["owner@acme.test"], "password": ["x"]},
        {"email": True, "password": 1.5},
        {"email": "x" * 5000 + "@acme.test", "password": "p"},
        {"email": "owner@acme.test", "password": "p" * 100_000},
    ],
)
@pytest.mark.parametrize("path", [LOGIN, "/login", "/api/auth/signup", "/register"])
def test_odd_bodies_never_answer_500(client, path, payload):
    response = post_json(client, path, json.dumps(payload))
    assert response.status_code in (400, 401), response.content
    body = response.json()
    assert body["success"] is False
    assert body["error"] in {"VALIDATION_ERROR", "INVALID_CREDENTIALS", "INVALID_JSON"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        (LOGIN, {"email": "owner@acme.test", "password": "Correct\x00Horse"}, "password"),
        (LOGIN, {"email": "own\x00er@acme.test", "password": "Correct-Horse-42!"}, "email"),
        ("/api/auth/signup", {"name": "Nul\x00Name", "email": "nul@acme.test", "password": "A-long-pass-4242"}, "name"),
        ("/api/auth/forgot-password", {"email": "owner\x00@acme.test"}, "email"),
        ("/login", {"email": "owner@acme.test", "password": "Correct\x00Horse"}, "password"),
        ("/register", {"name": "Nul\x00Name", "email": "nul@acme.test", "password": "A-long-pass-4242"}, "name"),
    ],
)
def test_nul_byte_in_a_string_is_400_not_500(client, path, payload, field):
    body = assert_envelope(post_json(client, path, json.dumps(payload)), 400, "VALIDATION_ERROR")
    assert field in body["errors"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", [LOGIN, "/login", "/api/auth/signup"])
def test_ten_megabyte_body_is_413_before_parsing(client, path):
    raw = json.dumps({"email": "owner@acme.test", "password": "x" * (10 * 1024 * 1024)})
    assert_envelope(post_json(client, path, raw), 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.django_db
@pytest.mark.parametrize("path", [LOGIN, "/login"])
def test_ten_megabyte_login_with_good_credentials_is_not_parsed(client, owner, password, path):
    raw = json.dumps({"email": owner.email, "password": password, "padding": "x" * (10 * 1024 * 1024)})
    response = post_json(client, path, raw)
    assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")
    owner.refresh_from_db()
    assert owner.last_login is None  # the view never saw the credentials
    assert "sessionid" not in response.cookies


@pytest.mark.django_db
def test_ten_megabyte_body_is_refused_even_if_it_is_not_json(client):
    # "Nothing parsed": a body that would be INVALID_JSON is refused for its size first.
    assert_envelope(post_json(client, LOGIN, b"{" * (10 * 1024 * 1024)), 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.django_db
def test_text_plain_body_is_415(client):
    response = post_json(client, LOGIN, "email=owner@acme.test", content_type="text/plain")
    assert_envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")


# --- routing and authentication errors ------------------------------------------------


@pytest.mark.django_db
def test_wrong_method_is_405_with_allow_header(client):
    response = client.get(LOGIN)
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    allowed = {m.strip() for m in response["Allow"].split(",")}
    assert "POST" in allowed
    assert "GET" not in allowed


@pytest.mark.django_db
def test_wrong_method_on_authenticated_route_is_405(owner_client):
    response = owner_client.delete("/api/auth/me")
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response["Allow"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/api/nope", "/api/nope/", "/api", "/api/", "/api/auth/nope", "/api/auth/login/extra"]
)
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_unknown_api_url_is_json_404(client, path, method):
    response = getattr(client, method)(path, HTTP_ACCEPT="text/html")
    assert_envelope(response, 404, "NOT_FOUND")
    assert b"<html" not in response.content.lower()


@pytest.mark.django_db
def test_unknown_non_api_url_stays_html(client):
    response = client.get("/definitely-not-here")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.django_db
def test_me_without_token_is_401_not_authenticated(client):
    response = client.get("/api/auth/me")
    assert_envelope(response, 401, "NOT_AUTHENTICATED")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["Bearer not-a-jwt", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"])
def test_me_with_garbage_token_is_401_token_invalid(client, header):
    response = client.get("/api/auth/me", HTTP_AUTHORIZATION=header)
    assert_envelope(response, 401, "TOKEN_INVALID")


@pytest.mark.django_db
def test_wrong_password_is_401_invalid_credentials(client, owner):
    response = post_json(client, LOGIN, json.dumps({"email": owner.email, "password": "Wrong-password-1"}))
    assert_envelope(response, 401, "INVALID_CREDENTIALS")


# --- bugs: a 500 in the envelope, never a traceback -------------------------------------


@pytest.mark.django_db
@pytest.mark.urls("heroshhi.tests.urls")
@pytest.mark.parametrize("path", ["/api/test-boom", "/api/test-boom-drf"], ids=["django-view", "drf-view"])
def test_unexpected_exception_is_500_envelope_without_traceback(client, path):
    response = client.get(path)
    assert_envelope(response, 500, "SERVER_ERROR")
    text = response.content.decode()
    for leak in (SECRET_TEXT, "RuntimeError", "Traceback", 'File "', ".py"):
        assert leak not in text


@pytest.mark.django_db
@pytest.mark.urls("heroshhi.tests.urls")
def test_unexpected_exception_is_an_envelope_with_debug_on_too(client, settings):
    settings.DEBUG = True
    response = client.get("/api/test-boom", HTTP_ACCEPT="text/html")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False
    assert body["error"] == "SERVER_ERROR"


# --- detail only with DEBUG -------------------------------------------------------------


@pytest.mark.django_db
def test_detail_is_added_only_when_debug_is_on(client, settings):
    settings.DEBUG = True
    body = post_json(client, LOGIN, "{}").json()
    assert body["error"] == "VALIDATION_ERROR"
    assert "detail" in body

    settings.DEBUG = False
    body = post_json(client, LOGIN, "{}").json()
    assert body["error"] == "VALIDATION_ERROR"
    assert "detail" not in body


@pytest.mark.django_db
def test_no_detail_in_any_error_when_debug_is_off(client, settings):
    settings.DEBUG = False
    responses = [
        post_json(client, LOGIN, "{}"),
        post_json(client, LOGIN, "{bad"),
        post_json(client, LOGIN, "x", content_type="text/plain"),
        client.get(LOGIN),
        client.get("/api/nope"),
        client.get("/api/auth/me"),
        client.get("/api/auth/me", HTTP_AUTHORIZATION="Bearer nope"),
    ]
    for response in responses:
        assert response.status_code >= 400
        assert "detail" not in response.json(), response.content


# --- domain errors ------------------------------------------------------------------------

EXPECTED_DOMAIN_ERRORS = {
    "DomainError": (400, "BAD_REQUEST"),
    "ValidationFailed": (400, "VALIDATION_ERROR"),
    "InvalidCredentials": (401, "INVALID_CREDENTIALS"),
    "InvalidToken": (400, "TOKEN_INVALID"),
    "InvalidTwoFactorCode": (401, "INVALID_2FA_CODE"),
    "PermissionDenied": (403, "PERMISSION_DENIED"),
    "NotFound": (404, "NOT_FOUND"),
}


def test_the_documented_domain_errors_exist():
    known = domain_errors()
    for name, (status, code) in EXPECTED_DOMAIN_ERRORS.items():
        assert (known[name].status_code, known[name].code) == (status, code), name


@pytest.mark.django_db
@pytest.mark.urls("heroshhi.tests.urls")
@pytest.mark.parametrize("name", sorted(domain_errors()))
def test_domain_error_maps_to_its_status_and_code(client, name):
    cls = domain_errors()[name]
    body = assert_envelope(client.get(f"/api/test-domain-error/{name}"), cls.status_code, cls.code)
    assert body["message"] == cls.default_message
    assert "errors" not in body

    body = assert_envelope(client.get(f"/api/test-domain-error/{name}?errors=1"), cls.status_code, cls.code)
    assert body["message"] == "Explained."
    assert body["errors"] == {"field": ["Is wrong."]}


def test_domain_error_codes_are_stable_machine_codes():
    for name, cls in domain_errors().items():
        assert cls.code.isupper(), name
        assert cls.code.replace("_", "").isalnum(), name
        assert 400 <= cls.status_code < 500, name


# --- success answers ------------------------------------------------------------------------


@pytest.mark.django_db
def test_success_answers_carry_success_true(client, owner, password, mailoutbox):
    login = post_json(client, LOGIN, json.dumps({"email": owner.email, "password": password}))
    assert login.status_code == 200
    assert login.json()["success"] is True
    auth = {"HTTP_AUTHORIZATION": f"Bearer {login.json()['token']}"}

    me = client.get("/api/auth/me", **auth)
    assert (me.status_code, me.json()["success"]) == (200, True)

    users = client.get("/api/users", **auth)
    assert (users.status_code, users.json()["success"]) == (200, True)

    forgot = post_json(client, "/api/auth/forgot-password", json.dumps({"email": owner.email}))
    assert (forgot.status_code, forgot.json()["success"]) == (200, True)

    refresh = post_json(client, "/api/auth/refresh", json.dumps({"refreshToken": login.json()["refreshToken"]}))
    assert (refresh.status_code, refresh.json()["success"]) == (200, True)

    signup = post_json(
        client,
        "/api/auth/signup",
        json.dumps({"name": "New Person", "email": "new@startup.test", "password": "A-long-pass-4242"}),
    )
    assert (signup.status_code, signup.json()["success"]) == (201, True)
