"""The team pages (admins only) through Django's test client, and the team services
behind them (accounts.services user_create / user_set_role / user_set_active): list,
add a user, change a role, deactivate and reactivate — never yourself, never the last
active admin; agents get 403, another account's user 404."""

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts import services
from accounts.models import User
from accounts.tests.factories import PASSWORD, UserFactory
from accounts.tests.helpers import csrf_from_form
from heroshhi.errors import NotFound, PermissionDenied, ValidationFailed
from tests.pages import page_text

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]

NEW_USER = {"name": "Nina Agent", "email": "Nina@Example.com", "role": "agent", "password": "Sturdy-Pass-917!"}


def row_of(response, user: User) -> str:
    match = re.search(rf'<tr data-user-id="{user.pk}">(.*?)</tr>', response.content.decode(), flags=re.S)
    assert match, f"{user.email} is not on the page"
    return match.group(1)


# --- The list ----------------------------------------------------------------------------


def test_the_team_page_lists_the_accounts_users(owner_web, owner, agent, account, outsider):
    secure = UserFactory(account=account, name="Safe Sam", two_factor_enabled=True)
    gone = UserFactory(account=account, name="Gone Gina", is_active=False)
    response = owner_web.get("/team")
    assert response.status_code == 200
    text = page_text(response)
    for user in (owner, agent, secure, gone):
        assert user.email in text
    assert outsider.email not in text
    assert "On" in row_of(response, secure)
    assert "Off" in row_of(response, agent)
    assert "Deactivated" in row_of(response, gone)
    assert "Reactivate" in row_of(response, gone)
    assert "(you)" in row_of(response, owner)
    assert 'option value="agent" selected' in row_of(response, agent)
    assert "Change role" not in row_of(response, owner)  # never your own role
    assert "Deactivate" not in row_of(response, owner)


def test_team_is_in_the_navigation_for_admins_only(owner_web, agent_web):
    assert 'href="/team"' in owner_web.get("/").content.decode()
    assert 'href="/team"' not in agent_web.get("/").content.decode()


@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("get", "/team"),
        ("get", "/team/new"),
        ("post", "/team/new"),
        ("post", "/team/{id}/role"),
        ("get", "/team/{id}/deactivate"),
        ("post", "/team/{id}/deactivate"),
        ("post", "/team/{id}/reactivate"),
    ],
)
def test_agents_get_403_everywhere_and_change_nothing(agent_web, owner, method, route):
    data = {**NEW_USER, "role": "agent"}
    response = getattr(agent_web, method)(route.format(id=owner.pk), data)
    assert response.status_code == 403
    owner.refresh_from_db()
    assert (owner.role, owner.is_active) == ("admin", True)
    assert not User.objects.filter(email="nina@example.com").exists()


def test_team_pages_need_a_login(client):
    response = client.get("/team")
    assert response.status_code == 302
    assert response["Location"].startswith("/login")


def test_the_team_list_runs_a_constant_number_of_queries(owner_web, account):
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert owner_web.get("/team").status_code == 200
        return len(queries)

    count_queries()  # the session's first request records its start
    few = count_queries()
    UserFactory.create_batch(10, account=account)
    assert count_queries() == few


# --- Add a user -------------------------------------------------------------------------


def test_an_admin_adds_an_agent_who_can_then_log_in(owner_web, account):
    assert owner_web.get("/team/new").status_code == 200
    response = owner_web.post("/team/new", NEW_USER)
    assert response.status_code == 302
    user = User.objects.get(email="nina@example.com")
    assert (user.account_id, user.role, user.name, user.is_active) == (account.pk, "agent", "Nina Agent", True)
    assert "Nina Agent can now log in as agent." in page_text(owner_web.get("/team"))
    login = APIClient().post(
        "/api/auth/login", {"email": "nina@example.com", "password": NEW_USER["password"]}, format="json"
    )
    assert login.status_code == 200


@pytest.mark.parametrize(
    ("change", "field_error"),
    [
        ({"email": ""}, "This field is required."),
        ({"email": "not-an-email"}, "Enter a valid email address."),
        ({"email": "x" * 300 + "@example.com"}, "at most 254 characters"),
        ({"name": ""}, "This field is required."),
        ({"name": "n" * 151}, "at most 150 characters"),
        ({"role": "superuser"}, "Select a valid choice."),
        ({"password": ""}, "This field is required."),
        ({"password": "123"}, "This password is too short."),
    ],
)
def test_add_user_validation_errors_are_on_the_form(owner_web, account, change, field_error):
    before = User.objects.count()
    response = owner_web.post("/team/new", {**NEW_USER, **change})
    assert response.status_code == 400
    assert field_error in page_text(response)
    assert User.objects.count() == before


def test_an_email_already_used_anywhere_is_refused(owner_web, outsider):
    response = owner_web.post("/team/new", {**NEW_USER, "email": outsider.email.upper()})
    assert response.status_code == 400
    assert "A user with this email already exists." in page_text(response)
    assert User.objects.filter(email__iexact=outsider.email).count() == 1


# --- Roles --------------------------------------------------------------------------------


def test_an_admin_promotes_and_demotes_a_teammate(owner_web, agent):
    assert owner_web.post(f"/team/{agent.pk}/role", {"role": "admin"}).status_code == 302
    agent.refresh_from_db()
    assert agent.role == "admin"
    assert f"{agent.name} is now admin." in page_text(owner_web.get("/team"))
    owner_web.post(f"/team/{agent.pk}/role", {"role": "agent"})
    agent.refresh_from_db()
    assert agent.role == "agent"


def test_an_unknown_role_changes_nothing(owner_web, agent):
    owner_web.post(f"/team/{agent.pk}/role", {"role": "owner"})
    agent.refresh_from_db()
    assert agent.role == "agent"
    assert "Nothing was changed: Select a valid choice." in page_text(owner_web.get("/team"))


def test_you_cannot_change_your_own_role(owner_web, owner, account):
    UserFactory(account=account, role="admin")  # not the last admin either
    owner_web.post(f"/team/{owner.pk}/role", {"role": "agent"})
    owner.refresh_from_db()
    assert owner.role == "admin"
    assert "You cannot change your own role." in page_text(owner_web.get("/team"))


def test_the_last_active_admin_cannot_be_demoted(owner, account):
    # Only reachable outside the pages (they never offer your own role): an admin whose
    # account was switched off meanwhile, or two admins demoting each other at once.
    former = UserFactory(account=account, role="admin", is_active=False)
    with pytest.raises(ValidationFailed, match="at least one active admin"):
        services.user_set_role(actor=former, user=owner, role="agent")
    owner.refresh_from_db()
    assert owner.role == "admin"
    services.user_set_role(actor=owner, user=former, role="agent")  # an inactive admin is not needed
    former.refresh_from_db()
    assert former.role == "agent"


# --- Deactivate and reactivate ------------------------------------------------------------


def test_deactivate_asks_first_then_logs_them_out(owner_web, agent):
    agent_client = Client()
    agent_client.force_login(agent)
    assert agent_client.get("/leads").status_code == 200
    ask = owner_web.get(f"/team/{agent.pk}/deactivate")
    assert ask.status_code == 200
    assert f"Deactivate {agent.name}?" in page_text(ask)
    agent.refresh_from_db()
    assert agent.is_active
    assert owner_web.post(f"/team/{agent.pk}/deactivate").status_code == 302
    agent.refresh_from_db()
    assert not agent.is_active
    assert "is deactivated and can no longer log in." in page_text(owner_web.get("/team"))
    assert agent_client.get("/leads").status_code == 302  # their session no longer works
    login = APIClient().post("/api/auth/login", {"email": agent.email, "password": PASSWORD}, format="json")
    assert login.status_code == 401

    assert owner_web.post(f"/team/{agent.pk}/reactivate").status_code == 302
    agent.refresh_from_db()
    assert agent.is_active
    assert "is active again and can log in." in page_text(owner_web.get("/team"))


def test_you_cannot_deactivate_yourself(owner_web, owner):
    owner_web.post(f"/team/{owner.pk}/deactivate")
    owner.refresh_from_db()
    assert owner.is_active
    assert "You cannot deactivate yourself." in page_text(owner_web.get("/team"))


def test_the_last_active_admin_cannot_be_deactivated(owner, account):
    second = UserFactory(account=account, role="admin")
    services.user_set_active(actor=second, user=owner, is_active=False)  # two admins: allowed
    former = UserFactory(account=account, role="admin", is_active=False)
    with pytest.raises(ValidationFailed, match="at least one active admin"):
        services.user_set_active(actor=former, user=second, is_active=False)
    second.refresh_from_db()
    assert (second.role, second.is_active) == ("admin", True)


@pytest.mark.parametrize("route", ["/team/{id}/role", "/team/{id}/deactivate", "/team/{id}/reactivate"])
def test_another_accounts_user_is_404(owner_web, outsider, route):
    assert owner_web.post(route.format(id=outsider.pk), {"role": "agent"}).status_code == 404
    outsider.refresh_from_db()
    assert (outsider.role, outsider.is_active) == ("admin", True)
    assert owner_web.get(f"/team/{outsider.pk}/deactivate").status_code == 404
    assert owner_web.post(route.format(id="not-a-uuid"), {"role": "agent"}).status_code == 404


@pytest.mark.parametrize("route", ["/team/new", "/team/{id}/role", "/team/{id}/deactivate", "/team/{id}/reactivate"])
def test_every_team_form_needs_its_csrf_token(owner, agent, route):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.post(route.format(id=agent.pk), {**NEW_USER, "role": "admin"}).status_code == 403
    agent.refresh_from_db()
    assert (agent.role, agent.is_active) == ("agent", True)
    assert not User.objects.filter(email="nina@example.com").exists()
    token = csrf_from_form(client.get("/team").content)
    response = client.post(route.format(id=agent.pk), {**NEW_USER, "role": "admin", "csrfmiddlewaretoken": token})
    assert response.status_code == 302


# --- The services, for callers other than these pages ------------------------------------


def test_only_admins_may_use_the_team_services(agent, owner):
    with pytest.raises(PermissionDenied):
        services.user_create(actor=agent, email="a@example.com", name="A", role="agent", password="Sturdy-Pass-917!")
    with pytest.raises(PermissionDenied):
        services.user_set_role(actor=agent, user=owner, role="agent")
    with pytest.raises(PermissionDenied):
        services.user_set_active(actor=agent, user=owner, is_active=False)


def test_the_team_services_refuse_another_accounts_user(owner, outsider):
    with pytest.raises(NotFound):
        services.user_set_role(actor=owner, user=outsider, role="agent")
    with pytest.raises(NotFound):
        services.user_set_active(actor=owner, user=outsider, is_active=False)
    outsider.refresh_from_db()
    assert (outsider.role, outsider.is_active) == ("admin", True)


def test_user_create_refuses_an_unknown_role_and_a_bad_email(owner):
    with pytest.raises(ValidationFailed) as unknown:
        services.user_create(actor=owner, email="a@example.com", name="A", role="root", password="Sturdy-Pass-917!")
    assert "role" in unknown.value.errors
    with pytest.raises(ValidationFailed) as bad:
        services.user_create(actor=owner, email="nope", name="A", role="agent", password="Sturdy-Pass-917!")
    assert "email" in bad.value.errors
    assert not User.objects.filter(name="A").exists()
