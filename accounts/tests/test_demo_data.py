"""`manage.py seed_demo`: the demo workspace of the embedded shape, idempotent, with
logins that work."""

import re
from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.models import Account, User
from campaigns.models import Drip, ScheduledMessage
from leads.models import Lead

pytestmark = pytest.mark.django_db

LOGIN_LINE = re.compile(r"^\s*(admin|agent)\s+(\S+@\S+)\s+/\s+(\S+)\s*$", re.MULTILINE)


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def printed_logins(output: str) -> dict[str, tuple[str, str]]:
    return {role: (email, password) for role, email, password in LOGIN_LINE.findall(output)}


def snapshot():
    return (
        sorted(Account.objects.values_list("id", "name")),
        sorted(User.objects.values_list("id", "email", "role", "password")),
        sorted(Lead.objects.values_list("id", "phone", "status", "assigned_to")),
        sorted(Drip.objects.values_list("id", "name")),
        sorted(ScheduledMessage.objects.values_list("id", "status", "recurrence")),
    )


def test_seed_demo_twice_creates_the_workspace_once():
    first_output = seed()
    after_first = snapshot()
    second_output = seed()

    assert snapshot() == after_first
    assert Account.objects.count() == 1
    account = Account.objects.get()
    users = list(account.users.all())
    assert len(users) == 2
    assert sorted(user.role for user in users) == ["admin", "agent"]
    leads = Lead.objects.filter(account=account)
    assert leads.count() > 0
    assert leads.values("phone").distinct().count() == leads.count()
    assert all(lead.phone.startswith("+") for lead in leads)
    # Both runs print the same logins and the workspace's webhook id.
    assert printed_logins(first_output) == printed_logins(second_output)
    assert str(account.id) in first_output
    # Something on every page: leads over several days, a drip, a scheduled message.
    assert leads.dates("created_at", "day").count() > 1
    drip = Drip.objects.get(account=account)
    assert drip.steps.count() == 2 and drip.is_active
    scheduled = ScheduledMessage.objects.get(account=account)
    assert (scheduled.status, scheduled.recurrence) == ("pending", "weekly")


def test_seed_demo_assigns_leads_only_to_demo_users():
    seed()
    account = Account.objects.get()

    assignees = set(
        Lead.objects.filter(account=account, assigned_to__isnull=False).values_list("assigned_to", flat=True)
    )

    assert assignees
    assert assignees <= set(account.users.values_list("pk", flat=True))


def test_seed_demo_does_not_touch_other_workspaces(owner, outsider):
    before = (User.objects.filter(pk__in=[owner.pk, outsider.pk]).count(), Account.objects.count())

    seed()

    assert User.objects.filter(pk__in=[owner.pk, outsider.pk]).count() == before[0]
    assert Account.objects.count() == before[1] + 1
    assert not Lead.objects.filter(account__in=[owner.account, outsider.account]).exists()


def test_the_printed_logins_work(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "auth": "100/15m"}
    logins = printed_logins(seed())
    seed()  # a second run must not change the passwords

    assert set(logins) == {"admin", "agent"}
    for role, (email, password) in logins.items():
        r = APIClient().post("/api/auth/login", {"email": email, "password": password}, format="json")
        assert r.status_code == 200, (role, r.content)
        body = r.json()
        assert body["token"]
        assert body["user"]["role"] == role
        assert body["user"]["account"]["id"] == str(Account.objects.get().id)


def test_the_demo_agent_sees_only_the_demo_workspace():
    logins = printed_logins(seed())
    email, password = logins["agent"]
    client = APIClient()
    token = client.post("/api/auth/login", {"email": email, "password": password}, format="json").json()["token"]

    r = client.get("/api/users", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert r.status_code == 200
    assert {member["email"] for member in r.json()["data"]} == {login[0] for login in logins.values()}
