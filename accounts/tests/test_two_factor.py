"""Two-factor authentication with real TOTP codes (pyotp): enrolment, the two-step
JWT login, single use of codes, the pending-login token, HeyDoc's session login."""

import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pyotp
import pytest
from django.core import signing
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.helpers import csrf_from_form

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("many_auth_requests")]

STEP = 30  # seconds per TOTP code


class Clock:
    """The server's clock, frozen at the start of a TOTP time step and moved by hand."""

    def __init__(self) -> None:
        self.timestamp = (int(time.time()) // STEP) * STEP + 1

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp, tz=UTC)

    def advance(self, seconds: int) -> None:
        self.timestamp += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(timezone, "now", clock.now)
    return clock


def code_at(secret: str, timestamp: int) -> str:
    return pyotp.TOTP(secret).at(timestamp)


def wrong_code(secret: str, timestamp: int) -> str:
    """A well-formed code that no accepted time step (±1 step of drift) produces."""
    valid = {code_at(secret, timestamp + drift * STEP) for drift in (-1, 0, 1)}
    return next(code for code in ("000000", "111111", "123456", "654321") if code not in valid)


def login(email: str, password: str):
    return APIClient().post("/api/auth/login", {"email": email, "password": password}, format="json")


def verify(temp_token: str, code: str):
    return APIClient().post("/api/auth/verify-2fa", {"tempToken": temp_token, "code": code}, format="json")


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is False
    assert body["error"] == code
    assert "token" not in body


def two_factor_is_on(user: User) -> bool:
    return User.objects.get(pk=user.pk).two_factor_enabled


@pytest.fixture
def secret(owner_client) -> str:
    """2FA setup started (not yet confirmed) for the owner."""
    r = owner_client.post("/api/auth/2fa/setup")
    assert r.status_code == 200, r.content
    return r.json()["secret"]


@pytest.fixture
def enabled(owner_client, owner, secret, clock) -> str:
    """2FA on for the owner; the current time step's code has been used to confirm it."""
    r = owner_client.post("/api/auth/2fa/enable", {"code": code_at(secret, clock.timestamp)}, format="json")
    assert r.status_code == 200, r.content
    return secret


# --- Enrolment -----------------------------------------------------------------------


def test_setup_gives_a_secret_and_a_provisioning_uri(owner_client, owner, password):
    r = owner_client.post("/api/auth/2fa/setup")

    assert r.status_code == 200, r.content
    body = r.json()
    assert body["success"] is True
    secret, uri = body["secret"], body["provisioningUri"]
    assert uri.startswith("otpauth://totp/")
    assert "Heroshhi" in uri
    parsed = pyotp.parse_uri(uri)
    assert parsed.secret == secret
    assert parsed.issuer == "Heroshhi"
    assert parsed.name == owner.email
    # Not on until a code confirms it.
    assert not two_factor_is_on(owner)
    assert login(owner.email, password).json()["token"]


def test_setup_twice_gives_a_new_secret(owner_client):
    first = owner_client.post("/api/auth/2fa/setup").json()["secret"]
    second = owner_client.post("/api/auth/2fa/setup").json()["secret"]

    assert first != second


def test_enable_with_a_wrong_code_leaves_2fa_off(owner_client, owner, secret, clock):
    r = owner_client.post("/api/auth/2fa/enable", {"code": wrong_code(secret, clock.timestamp)}, format="json")

    assert_error(r, 401, "INVALID_2FA_CODE")
    assert not two_factor_is_on(owner)
    assert owner_client.get("/api/auth/me").json()["user"]["twoFactorEnabled"] is False


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12 34 5"])
def test_enable_with_a_malformed_code_leaves_2fa_off(owner_client, owner, secret, code):
    r = owner_client.post("/api/auth/2fa/enable", {"code": code}, format="json")

    assert r.status_code in {400, 401}, r.content
    assert r.json()["error"] == ("VALIDATION_ERROR" if code == "" else "INVALID_2FA_CODE")
    assert not two_factor_is_on(owner)


def test_enable_without_setup_is_refused(owner_client, owner, clock):
    r = owner_client.post("/api/auth/2fa/enable", {"code": "123456"}, format="json")

    assert r.status_code == 400, r.content
    assert r.json()["error"] == "VALIDATION_ERROR"
    assert not two_factor_is_on(owner)


def test_enable_with_the_current_code_turns_2fa_on(owner_client, owner, secret, clock):
    r = owner_client.post("/api/auth/2fa/enable", {"code": code_at(secret, clock.timestamp)}, format="json")

    assert r.status_code == 200, r.content
    assert r.json()["success"] is True
    assert two_factor_is_on(owner)
    assert owner_client.get("/api/auth/me").json()["user"]["twoFactorEnabled"] is True


def test_the_secret_is_stored_encrypted(owner, enabled):
    pk = User._meta.pk.get_db_prep_value(owner.pk, connection)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT totp_secret FROM {User._meta.db_table} WHERE id = %s", [pk])  # noqa: S608
        (raw,) = cursor.fetchone()

    assert raw
    assert enabled not in raw
    assert enabled.lower() not in raw.lower()
    assert User.objects.get(pk=owner.pk).totp_secret == enabled


def test_setup_again_while_on_is_refused_and_keeps_the_secret(owner_client, owner, enabled, clock, password):
    r = owner_client.post("/api/auth/2fa/setup")

    assert r.status_code == 400, r.content
    assert r.json()["error"] == "VALIDATION_ERROR"
    assert two_factor_is_on(owner)
    clock.advance(STEP)
    temp = login(owner.email, password).json()["tempToken"]
    assert verify(temp, code_at(enabled, clock.timestamp)).status_code == 200


def test_2fa_routes_need_a_login(api_client):
    for path in ("/api/auth/2fa/setup", "/api/auth/2fa/enable", "/api/auth/2fa/disable"):
        r = api_client.post(path, {"code": "123456"}, format="json")
        assert r.status_code == 401, (path, r.content)
        assert r.json()["error"] == "NOT_AUTHENTICATED"


# --- Two-step login ------------------------------------------------------------------


def test_login_with_2fa_on_asks_for_a_code_and_gives_no_token(owner, password, enabled):
    r = login(owner.email, password)

    assert r.status_code == 200, r.content
    body = r.json()
    assert body["success"] is True
    assert body["requires2FA"] is True
    assert body["tempToken"]
    assert "token" not in body
    assert "refreshToken" not in body


def test_login_with_2fa_on_and_a_wrong_password_is_still_refused(owner, enabled):
    r = login(owner.email, "not-the-password-1")

    assert_error(r, 401, "INVALID_CREDENTIALS")
    assert "tempToken" not in r.json()


def test_verify_2fa_with_a_fresh_code_logs_in(owner, password, enabled, clock):
    temp = login(owner.email, password).json()["tempToken"]
    clock.advance(STEP)

    r = verify(temp, code_at(enabled, clock.timestamp))

    assert r.status_code == 200, r.content
    body = r.json()
    assert body["success"] is True
    assert body["token"] and body["refreshToken"]
    assert body["user"]["id"] == str(owner.pk)
    me = APIClient().get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    assert me.status_code == 200
    assert me.json()["user"]["twoFactorEnabled"] is True


def test_the_code_used_to_enable_cannot_log_in(owner, password, enabled, clock):
    temp = login(owner.email, password).json()["tempToken"]

    assert_error(verify(temp, code_at(enabled, clock.timestamp)), 401, "INVALID_2FA_CODE")


def test_a_code_logs_in_only_once(owner, password, enabled, clock):
    clock.advance(STEP)
    code = code_at(enabled, clock.timestamp)
    temp = login(owner.email, password).json()["tempToken"]
    assert verify(temp, code).status_code == 200

    # The same code again, with the same pending login and with a new one.
    assert_error(verify(temp, code), 401, "INVALID_2FA_CODE")
    again = login(owner.email, password).json()["tempToken"]
    assert_error(verify(again, code), 401, "INVALID_2FA_CODE")
    # An older code is no good either once a newer one was used.
    assert_error(verify(again, code_at(enabled, clock.timestamp - STEP)), 401, "INVALID_2FA_CODE")
    # The next one is.
    clock.advance(STEP)
    assert verify(again, code_at(enabled, clock.timestamp)).status_code == 200


def test_a_code_from_one_step_of_clock_drift_is_accepted_but_not_further(owner, password, enabled, clock):
    clock.advance(3 * STEP)
    temp = login(owner.email, password).json()["tempToken"]

    assert_error(verify(temp, code_at(enabled, clock.timestamp + 3 * STEP)), 401, "INVALID_2FA_CODE")
    assert_error(verify(temp, code_at(enabled, clock.timestamp - 2 * STEP)), 401, "INVALID_2FA_CODE")
    assert verify(temp, code_at(enabled, clock.timestamp + STEP)).status_code == 200


def test_verify_2fa_with_a_wrong_code_is_refused(owner, password, enabled, clock):
    clock.advance(STEP)
    temp = login(owner.email, password).json()["tempToken"]

    assert_error(verify(temp, wrong_code(enabled, clock.timestamp)), 401, "INVALID_2FA_CODE")
    # The right code still works afterwards.
    assert verify(temp, code_at(enabled, clock.timestamp)).status_code == 200


def test_verify_2fa_with_missing_fields_is_a_validation_error(owner, password, enabled):
    temp = login(owner.email, password).json()["tempToken"]

    r = APIClient().post("/api/auth/verify-2fa", {"tempToken": temp}, format="json")

    assert_error(r, 400, "VALIDATION_ERROR")
    assert "code" in r.json()["errors"]


def test_a_tampered_temp_token_is_refused(owner, password, enabled, clock):
    temp = login(owner.email, password).json()["tempToken"]
    clock.advance(STEP)
    code = code_at(enabled, clock.timestamp)
    tampered = temp[:-2] + ("AA" if not temp.endswith("AA") else "BB")

    assert_error(verify(tampered, code), 400, "TOKEN_INVALID")
    assert_error(verify("garbage", code), 400, "TOKEN_INVALID")
    # The code was not spent by the refused attempts.
    assert verify(temp, code).status_code == 200


def test_a_temp_token_of_another_purpose_is_refused(owner, enabled, clock):
    # Signed with the site's key, but not by the login step.
    forged = signing.dumps({"uid": str(owner.pk)})
    clock.advance(STEP)

    assert_error(verify(forged, code_at(enabled, clock.timestamp)), 400, "TOKEN_INVALID")


@pytest.mark.parametrize(("later", "status"), [(4 * 60, 200), (5 * 60 + 5, 400)])
def test_the_temp_token_expires_after_5_minutes(owner, password, enabled, clock, monkeypatch, later, status):
    temp = login(owner.email, password).json()["tempToken"]
    real_time = time.time
    monkeypatch.setattr(signing, "time", SimpleNamespace(time=lambda: real_time() + later))
    clock.advance(STEP)

    r = verify(temp, code_at(enabled, clock.timestamp))

    assert r.status_code == status, r.content
    if status == 400:
        assert r.json()["error"] == "TOKEN_INVALID"


def test_a_temp_token_is_void_once_2fa_is_off(owner_client, owner, password, enabled, clock):
    temp = login(owner.email, password).json()["tempToken"]
    clock.advance(STEP)
    disabled = owner_client.post("/api/auth/2fa/disable", {"code": code_at(enabled, clock.timestamp)}, format="json")
    assert disabled.status_code == 200
    clock.advance(STEP)

    assert_error(verify(temp, code_at(enabled, clock.timestamp)), 400, "TOKEN_INVALID")


# --- Turning it off ------------------------------------------------------------------


def test_disable_with_a_wrong_code_leaves_2fa_on(owner_client, owner, enabled, clock):
    clock.advance(STEP)

    r = owner_client.post("/api/auth/2fa/disable", {"code": wrong_code(enabled, clock.timestamp)}, format="json")

    assert_error(r, 401, "INVALID_2FA_CODE")
    assert two_factor_is_on(owner)


def test_disable_with_a_valid_code_turns_2fa_off(owner_client, owner, password, enabled, clock):
    clock.advance(STEP)

    r = owner_client.post("/api/auth/2fa/disable", {"code": code_at(enabled, clock.timestamp)}, format="json")

    assert r.status_code == 200, r.content
    assert not two_factor_is_on(owner)
    assert User.objects.get(pk=owner.pk).totp_secret == ""
    body = login(owner.email, password).json()
    assert body["token"]
    assert "requires2FA" not in body


def test_disable_when_off_is_refused(owner_client, owner, clock):
    r = owner_client.post("/api/auth/2fa/disable", {"code": "123456"}, format="json")

    assert r.status_code == 400, r.content
    assert r.json()["error"] == "VALIDATION_ERROR"


# --- HeyDoc's session login ----------------------------------------------------------


def session_login(client: Client, payload: dict):
    return client.post("/login", payload, content_type="application/json")


def test_session_login_of_a_2fa_user_needs_the_code(owner, password, enabled, clock):
    client = Client()

    r = session_login(client, {"email": owner.email, "password": password})

    assert r.status_code == 401, r.content
    assert r.json()["success"] is False
    assert r.json()["error"] == "TWO_FACTOR_REQUIRED"
    assert client.get("/api/auth/me").status_code == 401


def test_session_login_of_a_2fa_user_with_a_code(owner, password, enabled, clock):
    client = Client()
    clock.advance(STEP)

    r = session_login(client, {"email": owner.email, "password": password, "code": code_at(enabled, clock.timestamp)})

    assert r.status_code == 200, r.content
    assert r.json()["success"] is True
    assert client.get("/api/auth/me").json()["user"]["id"] == str(owner.pk)


def test_session_login_of_a_2fa_user_refuses_a_wrong_or_spent_code(owner, password, enabled, clock):
    client = Client()

    spent = session_login(
        client, {"email": owner.email, "password": password, "code": code_at(enabled, clock.timestamp)}
    )
    wrong = session_login(
        client, {"email": owner.email, "password": password, "code": wrong_code(enabled, clock.timestamp + STEP)}
    )

    for r in (spent, wrong):
        assert r.status_code == 401, r.content
        assert r.json()["error"] == "INVALID_2FA_CODE"
    assert client.get("/api/auth/me").status_code == 401


def test_session_login_ignores_a_code_when_2fa_is_off(owner, password):
    r = session_login(Client(), {"email": owner.email, "password": password, "code": "123456"})

    assert r.status_code == 200, r.content


def test_the_html_login_form_of_a_2fa_user_asks_for_the_code(owner, password, enabled, clock):
    browser = Client(enforce_csrf_checks=True)
    token = csrf_from_form(browser.get("/login").content)

    without = browser.post("/login", {"email": owner.email, "password": password, "csrfmiddlewaretoken": token})

    assert without.status_code == 400
    assert "authenticator app" in without.content.decode()
    assert browser.get("/api/auth/me").status_code == 401

    clock.advance(STEP)
    token = csrf_from_form(without.content)
    data = {"email": owner.email, "password": password, "code": code_at(enabled, clock.timestamp)}
    r = browser.post("/login", {**data, "csrfmiddlewaretoken": token})

    assert r.status_code == 302
    assert r["Location"] == "/"
    assert browser.get("/api/auth/me").json()["user"]["id"] == str(owner.pk)
