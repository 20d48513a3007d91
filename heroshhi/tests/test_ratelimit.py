"""Rate limits of the Heroshhi document's table: auth 5, standard 100, webhooks 500
per 15 minutes, answered with 429 in the envelope and a Retry-After header."""

import time
from types import SimpleNamespace

import pytest
import requests
from django_ratelimit import core as ratelimit_core

from accounts.tests.factories import PASSWORD, UserFactory
from conftest import bearer_client
from tests.servers import gunicorn_server


@pytest.fixture(autouse=True)
def _one_window(monkeypatch):
    """django-ratelimit counts in fixed windows: a test whose requests straddled a
    window's end saw the count start again (a failed run: the sixth login let in). Its
    clock stands still for the in-process tests, so they all fall in one window."""
    now = time.time()
    monkeypatch.setattr(ratelimit_core, "time", SimpleNamespace(time=lambda: now))


def _login(client, email, password, **extra):
    return client.post("/api/auth/login", {"email": email, "password": password}, format="json", **extra)


def test_sixth_login_attempt_in_the_window_is_refused(api_client, owner):
    for _ in range(5):
        assert _login(api_client, owner.email, "wrong-password").status_code == 401

    refused = _login(api_client, owner.email, PASSWORD)

    assert refused.status_code == 429
    body = refused.json()
    assert body["success"] is False
    assert body["error"] == "RATE_LIMITED"
    assert "token" not in body
    assert 0 < int(refused["Retry-After"]) <= 15 * 60


def test_auth_limit_is_counted_per_client_ip(api_client, owner):
    for _ in range(6):
        _login(api_client, owner.email, "wrong-password", REMOTE_ADDR="203.0.113.7")

    elsewhere = _login(api_client, owner.email, PASSWORD, REMOTE_ADDR="198.51.100.9")

    assert elsewhere.status_code == 200
    assert elsewhere.json()["token"]


def test_every_auth_route_shares_the_auth_budget(api_client, owner):
    for path, body in [
        ("/api/auth/login", {"email": owner.email, "password": "nope"}),
        ("/api/auth/forgot-password", {"email": owner.email}),
        ("/api/auth/reset-password", {"token": "x.y", "password": "whatever-long-1"}),
        ("/api/auth/verify-2fa", {"tempToken": "x", "code": "123456"}),
        ("/api/auth/signup", {"name": "N", "email": "n@example.com", "password": "short"}),
    ]:
        assert api_client.post(path, body, format="json").status_code != 429

    session_login = api_client.post("/login", {"email": owner.email, "password": PASSWORD}, format="json")

    assert session_login.status_code == 429
    assert session_login.json()["error"] == "RATE_LIMITED"


def test_html_login_form_is_limited_too(client, owner):
    for _ in range(5):
        client.post("/login", {"email": owner.email, "password": "wrong"})

    page = client.post("/login", {"email": owner.email, "password": PASSWORD})

    assert page.status_code == 429
    assert "Too many attempts" in page.content.decode()
    assert "_auth_user_id" not in client.session


def test_standard_limit_is_per_user_and_configurable(settings, owner, agent):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "3/15m"}
    owner_client, agent_client = bearer_client(owner), bearer_client(agent)

    statuses = [owner_client.get("/api/auth/me").status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    assert owner_client.get("/api/auth/me").json()["error"] == "RATE_LIMITED"
    assert agent_client.get("/api/auth/me").status_code == 200


def test_document_limits_are_the_defaults(settings):
    assert settings.RATE_LIMITS == {"auth": "5/15m", "standard": "100/15m", "webhook": "500/15m"}


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_two_server_processes_share_one_counter():
    """Production runs N web processes: a client can't multiply its budget by
    spreading attempts over them."""
    user = UserFactory(email="shared@example.com")
    with gunicorn_server() as first, gunicorn_server() as second:
        statuses = []
        for base in [first, second, first, second, first]:
            answer = requests.post(
                f"{base}/api/auth/login", json={"email": user.email, "password": "wrong"}, timeout=30
            )
            statuses.append(answer.status_code)
        sixth = requests.post(f"{second}/api/auth/login", json={"email": user.email, "password": PASSWORD}, timeout=30)

    assert statuses == [401] * 5
    assert sixth.status_code == 429
    assert sixth.json()["error"] == "RATE_LIMITED"
    assert int(sixth.headers["Retry-After"]) > 0


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_token_from_one_process_works_on_another_and_debug_is_off():
    user = UserFactory(email="roaming@example.com")
    with gunicorn_server() as first, gunicorn_server() as second:
        token = requests.post(
            f"{first}/api/auth/login", json={"email": user.email, "password": PASSWORD}, timeout=30
        ).json()["token"]
        me = requests.get(f"{second}/api/auth/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        missing = requests.get(f"{second}/api/missing", timeout=30)

    assert me.status_code == 200
    assert me.json()["user"]["email"] == user.email
    assert missing.status_code == 404
    assert missing.json() == {"success": False, "message": "Not found.", "error": "NOT_FOUND"}
    assert me.headers["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in me.headers  # plain HTTP on loopback


def test_webhook_scope_counts_per_ip(rf, db, settings):
    from heroshhi.ratelimit import rate_limit_hit

    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "webhook": "2/15m"}
    request = rf.post("/api/webhooks/leads", REMOTE_ADDR="192.0.2.1")
    request.user = None

    results = [rate_limit_hit(request, "webhook").limited for _ in range(3)]

    assert results == [False, False, True]


@pytest.fixture
def rf(db):
    from django.test import RequestFactory

    return RequestFactory()
