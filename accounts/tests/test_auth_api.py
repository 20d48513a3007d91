"""The Heroshhi auth API (/api/auth/…): JWT login, sign-up, password reset, tokens, /me."""

from datetime import datetime, timedelta

import pytest
from django.contrib.auth.tokens import default_token_generator
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import Account, User
from accounts.tests.helpers import reset_token_from

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "Brand-New-Secret-2026"


def login(client: APIClient, email: str, password: str):
    return client.post("/api/auth/login", {"email": email, "password": password}, format="json")


def me(token: str):
    return APIClient().get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}")


def refresh(client: APIClient, token):
    return client.post("/api/auth/refresh", {"refreshToken": token}, format="json")


def reset_password(client: APIClient, token: str, password: str):
    return client.post("/api/auth/reset-password", {"token": token, "password": password}, format="json")


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is False
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    return body


# --- Login ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/auth/login", "/api/auth/login/"])
def test_login_answers_tokens_and_the_user(api_client, owner, password, path):
    r = api_client.post(path, {"email": owner.email, "password": password}, format="json")

    assert r.status_code == 200, r.content
    body = r.json()
    assert body["success"] is True
    assert body["token"] and body["refreshToken"] and body["token"] != body["refreshToken"]
    assert body["user"]["email"] == owner.email
    assert body["user"]["role"] == "admin"
    assert body["user"]["account"]["id"] == str(owner.account_id)
    assert "requires2FA" not in body
    assert me(body["token"]).json()["user"]["id"] == str(owner.pk)


def test_login_email_is_case_insensitive(api_client, owner, password):
    r = login(api_client, owner.email.upper(), password)

    assert r.status_code == 200, r.content
    assert r.json()["user"]["id"] == str(owner.pk)


def test_login_records_last_login(api_client, owner, password):
    assert owner.last_login is None

    login(api_client, owner.email, password)

    owner.refresh_from_db()
    assert owner.last_login is not None


def test_login_with_a_wrong_password_is_refused(api_client, owner):
    r = login(api_client, owner.email, "not-the-password-1")

    body = assert_error(r, 401, "INVALID_CREDENTIALS")
    assert "token" not in body


def test_login_with_an_unknown_email_is_refused_the_same_way(api_client, owner, password):
    wrong_password = login(api_client, owner.email, "not-the-password-1").json()
    unknown = login(api_client, "nobody@acme.test", password)

    body = assert_error(unknown, 401, "INVALID_CREDENTIALS")
    assert body == wrong_password  # nothing tells which emails exist


def test_login_of_a_deactivated_user_is_refused(api_client, owner, password):
    owner.is_active = False
    owner.save()

    r = login(api_client, owner.email, password)

    assert_error(r, 401, "INVALID_CREDENTIALS")


@pytest.mark.parametrize(
    ("payload", "bad_fields"),
    [
        ({}, {"email", "password"}),
        ({"email": "owner@acme.test"}, {"password"}),
        ({"password": "whatever-it-is"}, {"email"}),
        ({"email": "not-an-email", "password": "whatever-it-is"}, {"email"}),
        ({"email": ["owner@acme.test"], "password": "whatever-it-is"}, {"email"}),
        ({"email": "owner@acme.test", "password": {"nested": True}}, {"password"}),
        ({"email": 42, "password": 42}, {"email"}),
    ],
)
def test_login_with_missing_or_ill_typed_fields_is_a_validation_error(api_client, owner, payload, bad_fields):
    r = api_client.post("/api/auth/login", payload, format="json")

    body = assert_error(r, 400, "VALIDATION_ERROR")
    assert bad_fields <= set(body["errors"])


def test_login_with_a_body_that_is_not_json_is_refused_cleanly(api_client, owner):
    r = api_client.post("/api/auth/login", data="{not json", content_type="application/json")

    assert_error(r, 400, "INVALID_JSON")


# --- Sign-up -------------------------------------------------------------------------


def test_signup_creates_a_workspace_and_its_admin(api_client):
    payload = {"name": "Sam Founder", "email": "Sam@NewCo.test", "password": NEW_PASSWORD, "companyName": "NewCo"}

    r = api_client.post("/api/auth/signup", payload, format="json")

    assert r.status_code == 201, r.content
    body = r.json()
    assert body["success"] is True
    user = User.objects.get(email="sam@newco.test")
    assert user.role == User.Role.ADMIN
    assert user.name == "Sam Founder"
    assert user.check_password(NEW_PASSWORD)
    assert user.account.name == "NewCo"
    assert list(user.account.users.all()) == [user]
    assert body["user"]["id"] == str(user.pk)
    assert body["user"]["account"] == {**body["user"]["account"], "id": str(user.account_id), "name": "NewCo"}
    assert me(body["token"]).json()["user"]["email"] == "sam@newco.test"


def test_signup_without_a_company_name_still_names_the_workspace(api_client):
    r = api_client.post(
        "/api/auth/signup",
        {"name": "Solo Trader", "email": "solo@trader.test", "password": NEW_PASSWORD},
        format="json",
    )

    assert r.status_code == 201, r.content
    assert User.objects.get(email="solo@trader.test").account.name.strip()


def test_signup_then_login_with_the_same_password(api_client):
    api_client.post(
        "/api/auth/signup", {"name": "Sam", "email": "sam@newco.test", "password": NEW_PASSWORD}, format="json"
    )

    r = login(APIClient(), "sam@newco.test", NEW_PASSWORD)

    assert r.status_code == 200, r.content


@pytest.mark.parametrize("email", ["owner@acme.test", "OWNER@Acme.TEST", "  owner@acme.test  "])
def test_signup_with_an_email_already_taken_is_refused(api_client, owner, email):
    accounts_before = Account.objects.count()

    r = api_client.post(
        "/api/auth/signup", {"name": "Copycat", "email": email, "password": NEW_PASSWORD}, format="json"
    )

    body = assert_error(r, 400, "VALIDATION_ERROR")
    assert "email" in body["errors"]
    assert Account.objects.count() == accounts_before
    assert User.objects.filter(email__iexact="owner@acme.test").count() == 1


@pytest.mark.parametrize("weak", ["short1!", "password123", "12345678901234", "samnewco.test"])
def test_signup_with_a_weak_password_is_refused_and_creates_nothing(api_client, weak):
    r = api_client.post(
        "/api/auth/signup", {"name": "Sam", "email": "samnewco.test@x.test", "password": weak}, format="json"
    )

    body = assert_error(r, 400, "VALIDATION_ERROR")
    assert body["errors"]["password"]
    assert not User.objects.filter(email="samnewco.test@x.test").exists()
    assert not Account.objects.exists()


@pytest.mark.parametrize(
    ("payload", "bad_field"),
    [
        ({"email": "a@b.test", "password": NEW_PASSWORD}, "name"),
        ({"name": "Sam", "password": NEW_PASSWORD}, "email"),
        ({"name": "Sam", "email": "a@b.test"}, "password"),
        ({"name": "Sam", "email": "nope", "password": NEW_PASSWORD}, "email"),
        ({"name": ["Sam"], "email": "a@b.test", "password": NEW_PASSWORD}, "name"),
    ],
)
def test_signup_with_missing_or_ill_typed_fields_is_a_validation_error(api_client, payload, bad_field):
    r = api_client.post("/api/auth/signup", payload, format="json")

    body = assert_error(r, 400, "VALIDATION_ERROR")
    assert bad_field in body["errors"]
    assert not User.objects.exists()


def test_signup_strips_html_from_names(api_client):
    r = api_client.post(
        "/api/auth/signup",
        {
            "name": "<b>Sam</b> <script>alert('x')</script>Founder",
            "email": "sam@newco.test",
            "password": NEW_PASSWORD,
            "companyName": '<img src=x onerror="alert(1)">NewCo <i>Ltd</i>',
        },
        format="json",
    )

    assert r.status_code == 201, r.content
    user = User.objects.get(email="sam@newco.test")
    assert user.name == "Sam Founder"
    assert user.account.name == "NewCo Ltd"
    assert r.json()["user"]["name"] == "Sam Founder"


# --- Forgot / reset password ---------------------------------------------------------


def test_forgot_password_answers_the_same_for_known_and_unknown_emails(api_client, owner, mailoutbox):
    known = api_client.post("/api/auth/forgot-password", {"email": owner.email}, format="json")
    unknown = api_client.post("/api/auth/forgot-password", {"email": "nobody@acme.test"}, format="json")

    assert known.status_code == unknown.status_code == 200
    assert known.content == unknown.content
    assert known.json()["success"] is True
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == [owner.email]
    token = reset_token_from(mail)
    assert token in mail.body


def test_forgot_password_sends_nothing_for_a_deactivated_user(api_client, owner, mailoutbox):
    owner.is_active = False
    owner.save()

    r = api_client.post("/api/auth/forgot-password", {"email": owner.email}, format="json")

    assert r.status_code == 200
    assert mailoutbox == []


def test_forgot_password_requires_an_email(api_client, mailoutbox):
    r = api_client.post("/api/auth/forgot-password", {"email": "not an email"}, format="json")

    body = assert_error(r, 400, "VALIDATION_ERROR")
    assert "email" in body["errors"]
    assert mailoutbox == []


@pytest.fixture
def reset_token(api_client, owner, mailoutbox) -> str:
    r = api_client.post("/api/auth/forgot-password", {"email": owner.email}, format="json")
    assert r.status_code == 200
    return reset_token_from(mailoutbox[-1])


def test_reset_password_sets_the_new_password_once(api_client, owner, password, reset_token, many_auth_requests):
    r = reset_password(api_client, reset_token, NEW_PASSWORD)

    assert r.status_code == 200, r.content
    assert r.json()["success"] is True
    assert login(APIClient(), owner.email, NEW_PASSWORD).status_code == 200
    assert_error(login(APIClient(), owner.email, password), 401, "INVALID_CREDENTIALS")

    again = reset_password(api_client, reset_token, "Yet-Another-9876")

    assert_error(again, 400, "TOKEN_INVALID")
    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)


@pytest.mark.parametrize(("late_by", "status"), [(-60, 200), (60, 400)])
def test_reset_token_expires_after_the_configured_timeout(
    api_client, owner, password, reset_token, settings, monkeypatch, late_by, status
):
    settings.PASSWORD_RESET_TIMEOUT = 600
    later = datetime.now() + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + late_by)
    monkeypatch.setattr(default_token_generator, "_now", lambda: later)

    r = reset_password(api_client, reset_token, NEW_PASSWORD)

    assert r.status_code == status, r.content
    owner.refresh_from_db()
    if status == 400:
        assert r.json()["error"] == "TOKEN_INVALID"
        assert owner.check_password(password)
    else:
        assert owner.check_password(NEW_PASSWORD)


@pytest.mark.parametrize("weak", ["short1!", "password123", "owner@acme.test"])
def test_reset_with_a_weak_password_keeps_the_old_one(api_client, owner, password, reset_token, weak):
    r = reset_password(api_client, reset_token, weak)

    body = assert_error(r, 400, "VALIDATION_ERROR")
    assert body["errors"]["password"]
    owner.refresh_from_db()
    assert owner.check_password(password)


def test_the_token_still_works_after_a_refused_weak_password(api_client, owner, reset_token):
    reset_password(api_client, reset_token, "short")

    r = reset_password(api_client, reset_token, NEW_PASSWORD)

    assert r.status_code == 200, r.content


@pytest.mark.parametrize("token", ["garbage", "abc.def", "Zm9v.bar-baz", "...", "x" * 300])
def test_reset_with_a_made_up_token_is_refused(api_client, owner, password, token):
    r = reset_password(api_client, token, NEW_PASSWORD)

    assert_error(r, 400, "TOKEN_INVALID")
    owner.refresh_from_db()
    assert owner.check_password(password)


def test_a_reset_token_works_only_for_its_own_user(api_client, owner, password, reset_token, agent):
    # The same token part glued to another user's id.
    _, _, token_part = reset_token.partition(".")
    forged = f"{reset_token_for_uid(agent)}.{token_part}"

    r = reset_password(api_client, forged, NEW_PASSWORD)

    assert_error(r, 400, "TOKEN_INVALID")
    agent.refresh_from_db()
    assert agent.check_password(password)


def reset_token_for_uid(user) -> str:
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    return urlsafe_base64_encode(force_bytes(user.pk))


def test_reset_revokes_the_refresh_tokens_issued_before(api_client, owner, password, mailoutbox, many_auth_requests):
    before = login(APIClient(), owner.email, password).json()["refreshToken"]
    api_client.post("/api/auth/forgot-password", {"email": owner.email}, format="json")
    token = reset_token_from(mailoutbox[-1])
    assert reset_password(api_client, token, NEW_PASSWORD).status_code == 200

    r = refresh(api_client, before)

    assert_error(r, 400, "TOKEN_INVALID")
    # A token issued after the reset refreshes fine.
    after = login(APIClient(), owner.email, NEW_PASSWORD).json()["refreshToken"]
    assert refresh(api_client, after).status_code == 200


# --- /me and access tokens ------------------------------------------------------------


def test_me_answers_the_user_with_account_and_role(owner_client, owner):
    r = owner_client.get("/api/auth/me")

    assert r.status_code == 200, r.content
    body = r.json()
    assert body["success"] is True
    user = body["user"]
    assert user["id"] == str(owner.pk)
    assert user["email"] == owner.email
    assert user["name"] == owner.name
    assert user["role"] == "admin"
    assert user["twoFactorEnabled"] is False
    assert user["account"]["id"] == str(owner.account.id)
    assert user["account"]["name"] == "Acme"
    assert "password" not in user and "totpSecret" not in user and "totp_secret" not in user


def test_me_of_an_agent_says_agent(agent_client, agent):
    user = agent_client.get("/api/auth/me/").json()["user"]

    assert user["role"] == "agent"
    assert user["account"]["id"] == str(agent.account_id)


def test_me_without_a_token_is_not_authenticated(api_client):
    r = api_client.get("/api/auth/me")

    assert_error(r, 401, "NOT_AUTHENTICATED")
    assert r["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer garbage", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl", "Bearer "])
def test_me_with_a_garbage_token_is_refused(api_client, owner, header):
    r = api_client.get("/api/auth/me", HTTP_AUTHORIZATION=header)

    assert r.status_code == 401, r.content
    assert r.json()["success"] is False
    assert r.json()["error"] == "TOKEN_INVALID"


def test_me_with_a_garbage_token_says_token_invalid(api_client, owner):
    r = api_client.get("/api/auth/me", HTTP_AUTHORIZATION="Bearer not.a.jwt")

    assert_error(r, 401, "TOKEN_INVALID")


def test_me_with_an_expired_access_token_is_refused(api_client, owner):
    token = AccessToken.for_user(owner)
    token.set_exp(lifetime=-timedelta(minutes=1))

    r = api_client.get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert_error(r, 401, "TOKEN_INVALID")


def test_me_with_a_token_of_a_deactivated_user_is_refused(api_client, owner):
    token = AccessToken.for_user(owner)
    owner.is_active = False
    owner.save()

    r = api_client.get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert r.status_code == 401, r.content


def test_a_refresh_token_is_not_an_access_token(api_client, owner, password):
    refresh_token = login(api_client, owner.email, password).json()["refreshToken"]

    r = api_client.get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {refresh_token}")

    assert_error(r, 401, "TOKEN_INVALID")


def test_access_tokens_live_at_most_15_minutes(api_client, owner, password):
    token = AccessToken(login(api_client, owner.email, password).json()["token"])

    lifetime = token["exp"] - token["iat"]

    assert 0 < lifetime <= 15 * 60


# --- Refresh and logout ---------------------------------------------------------------


def test_refresh_rotates_the_token_pair(api_client, owner, password):
    first = login(api_client, owner.email, password).json()

    r = api_client.post("/api/auth/refresh/", {"refreshToken": first["refreshToken"]}, format="json")

    assert r.status_code == 200, r.content
    pair = r.json()
    assert pair["success"] is True
    assert pair["refreshToken"] != first["refreshToken"]
    assert me(pair["token"]).status_code == 200
    assert_error(refresh(api_client, first["refreshToken"]), 400, "TOKEN_INVALID")
    assert refresh(api_client, pair["refreshToken"]).status_code == 200


def test_refresh_of_a_deactivated_user_is_refused(api_client, owner, password):
    token = login(api_client, owner.email, password).json()["refreshToken"]
    owner.is_active = False
    owner.save()

    r = refresh(api_client, token)

    assert_error(r, 400, "TOKEN_INVALID")


@pytest.mark.parametrize(
    ("value", "code"), [("garbage", "TOKEN_INVALID"), ("", "VALIDATION_ERROR"), (None, "VALIDATION_ERROR")]
)
def test_refresh_with_a_bad_token_is_refused(api_client, value, code):
    r = refresh(api_client, value)

    assert_error(r, 400, code)


def test_refresh_refuses_an_access_token(api_client, owner, password):
    access = login(api_client, owner.email, password).json()["token"]

    r = refresh(api_client, access)

    assert_error(r, 400, "TOKEN_INVALID")


def test_logout_revokes_the_refresh_token(api_client, owner, password):
    token = login(api_client, owner.email, password).json()["refreshToken"]

    r = api_client.post("/api/auth/logout", {"refreshToken": token}, format="json")

    assert r.status_code == 200, r.content
    assert r.json()["success"] is True
    assert_error(refresh(api_client, token), 400, "TOKEN_INVALID")


def test_logout_of_one_session_keeps_the_others(api_client, owner, password):
    phone = login(APIClient(), owner.email, password).json()["refreshToken"]
    laptop = login(APIClient(), owner.email, password).json()["refreshToken"]

    api_client.post("/api/auth/logout", {"refreshToken": phone}, format="json")

    assert refresh(api_client, laptop).status_code == 200


def test_users_of_other_accounts_are_not_in_my_team(owner_client, owner, agent, outsider):
    r = owner_client.get("/api/users")

    assert r.status_code == 200, r.content
    emails = {member["email"] for member in r.json()["data"]}
    assert emails == {owner.email, agent.email}
