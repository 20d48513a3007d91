"""The Django admin: a superuser can browse and add accounts, users and leads, and
turn off a user's two-factor authentication when they lost their phone; every model of
the project has an admin whose list opens; secrets (an account's webhook secret, a
user's TOTP secret and password hash, issued refresh tokens) are never shown."""

from io import StringIO

import pyotp
import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import Account, User
from leads.models import Lead

pytestmark = pytest.mark.django_db

ADMIN_PAGES = [
    "/admin/",
    "/admin/accounts/account/",
    "/admin/accounts/account/add/",
    "/admin/accounts/user/",
    "/admin/accounts/user/add/",
    "/admin/leads/lead/",
    "/admin/leads/lead/add/",
]


@pytest.fixture
def superuser(password) -> User:
    return User.objects.create_superuser("root@heroshhi.test", password, name="Root")


@pytest.fixture
def staff_browser(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def lead(owner) -> Lead:
    return Lead.objects.create(account=owner.account, name="Priya Sharma", phone="+919876543210", assigned_to=owner)


def test_create_superuser_gives_a_staff_admin_with_a_workspace(superuser, password):
    assert superuser.is_staff and superuser.is_superuser
    assert superuser.role == User.Role.ADMIN
    assert superuser.account_id is not None
    assert superuser.check_password(password)


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_a_superuser_can_open_the_admin_pages(staff_browser, owner, agent, lead, path):
    r = staff_browser.get(path)

    assert r.status_code == 200, path


def test_the_changelists_show_the_objects(staff_browser, owner, lead):
    assert "Acme" in staff_browser.get("/admin/accounts/account/").content.decode()
    assert owner.email in staff_browser.get("/admin/accounts/user/").content.decode()
    assert "Priya Sharma" in staff_browser.get("/admin/leads/lead/").content.decode()


@pytest.mark.parametrize(
    "path",
    [
        "/admin/accounts/account/{account}/change/",
        "/admin/accounts/user/{owner}/change/",
        "/admin/leads/lead/{lead}/change/",
    ],
)
def test_a_superuser_can_open_the_change_pages(staff_browser, owner, lead, path):
    r = staff_browser.get(path.format(account=owner.account_id, owner=owner.pk, lead=lead.pk))

    assert r.status_code == 200


def test_the_changelists_can_be_searched(staff_browser, owner, outsider, lead):
    r = staff_browser.get("/admin/accounts/user/", {"q": "globex"})

    assert r.status_code == 200
    page = r.content.decode()
    assert outsider.email in page
    assert owner.email not in page
    assert staff_browser.get("/admin/leads/lead/", {"q": "9876543210"}).status_code == 200
    assert staff_browser.get("/admin/accounts/account/", {"q": "Acme"}).status_code == 200


def test_the_user_admin_never_shows_the_totp_secret(staff_browser, owner):
    owner.totp_secret = pyotp.random_base32()
    owner.save()

    page = staff_browser.get(f"/admin/accounts/user/{owner.pk}/change/").content.decode()

    assert owner.totp_secret not in page


def test_the_admin_login_page_refuses_non_staff(owner, password):
    client = Client()

    r = client.post("/admin/login/", {"username": owner.email, "password": password, "next": "/admin/"})

    assert r.status_code == 200  # the form again, with an error
    assert client.get("/admin/").status_code == 302


def test_the_admin_login_page_lets_staff_in(superuser, password):
    client = Client()

    r = client.post(
        "/admin/login/?next=/admin/", {"username": superuser.email, "password": password, "next": "/admin/"}
    )

    assert r.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_a_superuser_can_add_a_user(staff_browser, account):
    r = staff_browser.post(
        "/admin/accounts/user/add/",
        {
            "email": "New.Agent@Acme.test",
            "name": "New Agent",
            "account": str(account.pk),
            "role": "agent",
            "password1": "Brand-New-Secret-2026",
            "password2": "Brand-New-Secret-2026",
            "usable_password": "true",
        },
    )

    assert r.status_code == 302, r.content.decode()[:3000]
    user = User.objects.get(email__iexact="new.agent@acme.test")
    assert user.account == account
    assert user.role == User.Role.AGENT
    assert user.check_password("Brand-New-Secret-2026")


def test_a_superuser_can_change_a_user(staff_browser, agent):
    page = staff_browser.get(f"/admin/accounts/user/{agent.pk}/change/").context["adminform"].form
    data = {name: value for name, value in page.initial.items() if value is not None and name in page.fields}
    data.update(
        {
            "email": agent.email,
            "name": "Aditya Promoted",
            "account": str(agent.account_id),
            "role": "admin",
            "is_active": "on",
            "groups": [],
            "user_permissions": [],
        }
    )

    r = staff_browser.post(f"/admin/accounts/user/{agent.pk}/change/", data)

    assert r.status_code == 302, r.content.decode()[:3000]
    agent.refresh_from_db()
    assert agent.role == User.Role.ADMIN
    assert agent.name == "Aditya Promoted"
    assert agent.is_active


def test_createsuperuser_works_without_naming_an_account(monkeypatch, password):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", password)

    call_command("createsuperuser", email="ops@heroshhi.test", name="Ops", interactive=False, stdout=StringIO())

    user = User.objects.get(email="ops@heroshhi.test")
    assert user.is_superuser and user.is_staff
    assert user.account_id is not None
    client = Client()
    assert client.post("/admin/login/", {"username": user.email, "password": password}).status_code == 302
    assert client.get("/admin/").status_code == 200


def test_a_superuser_can_add_an_account(staff_browser):
    r = staff_browser.post(
        "/admin/accounts/account/add/", {"name": "Initech", "time_zone": "Asia/Kolkata", "default_country": "IN"}
    )

    assert r.status_code == 302
    assert Account.objects.get(name="Initech").time_zone == "Asia/Kolkata"


def test_an_unknown_time_zone_is_refused_in_the_admin(staff_browser):
    r = staff_browser.post(
        "/admin/accounts/account/add/", {"name": "Initech", "time_zone": "Mars/Olympus", "default_country": "IN"}
    )

    assert r.status_code == 200
    assert not Account.objects.filter(name="Initech").exists()


def test_a_superuser_can_add_a_lead(staff_browser, owner):
    r = staff_browser.post(
        "/admin/leads/lead/add/",
        {
            "account": str(owner.account_id),
            "name": "Rahul Verma",
            "phone": "+919876543211",
            "status": "pending",
            "segment": "warm",
            # The engagements inline's management form.
            "engagements-TOTAL_FORMS": "0",
            "engagements-INITIAL_FORMS": "0",
        },
    )

    assert r.status_code == 302, r.content.decode()[:3000]
    assert Lead.objects.get(phone="+919876543211").account == owner.account


def test_the_reset_2fa_action_turns_two_factor_off(staff_browser, owner, agent, password):
    for user in (owner, agent):
        user.totp_secret = pyotp.random_base32()
        user.two_factor_enabled = True
        user.totp_last_counter = 1
        user.save()
    before = APIClient().post("/api/auth/login", {"email": owner.email, "password": password}, format="json")
    assert before.json()["requires2FA"] is True

    r = staff_browser.post(
        "/admin/accounts/user/",
        {"action": "reset_two_factor", "_selected_action": [str(owner.pk)]},
        follow=True,
    )

    assert r.status_code == 200
    assert "Two-factor authentication turned off for 1 user" in r.content.decode()
    owner.refresh_from_db()
    agent.refresh_from_db()
    assert owner.two_factor_enabled is False
    assert owner.totp_secret == ""
    assert owner.totp_last_counter is None
    assert agent.two_factor_enabled is True  # only the selected user
    body = APIClient().post("/api/auth/login", {"email": owner.email, "password": password}, format="json").json()
    assert body["token"]
    assert "requires2FA" not in body


def test_non_staff_users_cannot_use_the_admin(owner):
    client = Client()
    client.force_login(owner)

    r = client.get("/admin/accounts/user/")

    assert r.status_code == 302
    assert r["Location"].startswith("/admin/login/")


# --- Every model, and secrets never shown ------------------------------------------------------

OUR_APPS = ("accounts", "leads", "messaging", "campaigns")
INLINE_ONLY = {"campaigns.DripStep"}  # edited inside its drip


def test_every_model_of_the_project_has_an_admin():
    from django.apps import apps
    from django.contrib import admin

    missing = [
        model._meta.label
        for app in OUR_APPS
        for model in apps.get_app_config(app).get_models()
        if model not in admin.site._registry and model._meta.label not in INLINE_ONLY
    ]

    assert missing == []


def test_every_changelist_opens_with_data(admin_client, owner, agent, outsider, lead):
    from django.contrib import admin

    for model in admin.site._registry:
        path = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"

        assert admin_client.get(path).status_code == 200, path


@pytest.fixture
def webhook_secret(account) -> str:
    account.webhook_secret = "whsec-do-not-show-8f2c1a"
    account.save()
    return account.webhook_secret


def test_the_account_admin_never_shows_the_webhook_secret(admin_client, account, webhook_secret):
    change = admin_client.get(f"/admin/accounts/account/{account.pk}/change/")
    listing = admin_client.get("/admin/accounts/account/")

    assert change.status_code == listing.status_code == 200
    assert webhook_secret not in change.content.decode()
    assert webhook_secret not in listing.content.decode()
    assert "webhook_secret" not in change.context["adminform"].form.fields
    assert "Webhook secret set" in change.content.decode()


def test_saving_an_account_keeps_its_webhook_secret(admin_client, account, webhook_secret):
    r = admin_client.post(
        f"/admin/accounts/account/{account.pk}/change/",
        {"name": "Acme Realty", "time_zone": "Asia/Kolkata", "default_country": "IN"},
    )

    assert r.status_code == 302
    account.refresh_from_db()
    assert account.name == "Acme Realty"
    assert account.webhook_secret == webhook_secret


def test_an_account_with_messages_can_be_deleted(admin_client, account, lead):
    from leads.tests.factories import MessageFactory

    MessageFactory(lead=lead)

    assert not admin_client.get(f"/admin/accounts/account/{account.pk}/delete/").context["perms_lacking"]
    r = admin_client.post(f"/admin/accounts/account/{account.pk}/delete/", {"post": "yes"})

    assert r.status_code == 302
    assert not Account.objects.filter(pk=account.pk).exists()
    assert not Lead.objects.filter(pk=lead.pk).exists()


def test_the_refresh_tokens_admin_never_shows_a_token(admin_client, owner, password):
    from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

    body = APIClient().post("/api/auth/login", {"email": owner.email, "password": password}, format="json").json()
    refresh = body.get("refreshToken") or body.get("refresh")
    issued = OutstandingToken.objects.get(user=owner)
    assert issued.token and (refresh is None or refresh == issued.token)

    listing = admin_client.get("/admin/token_blacklist/outstandingtoken/")
    change = admin_client.get(f"/admin/token_blacklist/outstandingtoken/{issued.pk}/change/")

    assert listing.status_code == change.status_code == 200
    assert owner.email in listing.content.decode()
    assert issued.jti in change.content.decode()
    assert issued.token not in listing.content.decode()
    assert issued.token not in change.content.decode()
    assert issued.token.split(".")[1] not in change.content.decode()


def test_the_user_admin_never_shows_the_password_hash(admin_client, owner):
    page = admin_client.get(f"/admin/accounts/user/{owner.pk}/change/").content.decode()

    assert owner.password.split("$")[-1] not in page
