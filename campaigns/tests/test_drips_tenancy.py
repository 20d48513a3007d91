"""The drip tenancy matrix: two accounts, two roles, every drip route.

Both accounts are seeded alike (a drip each with the same name, leads unassigned, the
agent's and a colleague's, each enrolled), so a query that forgets its account or its
role shows up as a foreign row in an answer or as a changed row in the database.

- Another account's drip (or enrollment) answers 404 on every route, exactly like a
  missing one, for admins and agents alike, and nothing changes anywhere.
- Admins manage their drips; agents list and read them, enroll the leads they can see,
  and list and stop those leads' enrollments; creating, changing or deleting a drip is
  403 for them. A lead an agent can't see (or another account's) is never enrolled."""

from dataclasses import dataclass, field

import pytest
from django.utils import timezone

from accounts.models import Account, User
from accounts.tests.factories import UserFactory
from campaigns.models import Drip, DripStep, Enrollment
from conftest import bearer_client
from leads.models import Lead
from leads.tests.factories import LeadFactory

SIDES = ["acme", "globex"]
ROLES = ["admin", "agent"]
LEAD_KEYS = ["unassigned", "agent", "colleague"]
VISIBLE = {"admin": set(LEAD_KEYS), "agent": {"unassigned", "agent"}}

STEPS = [{"delay": {"amount": 1, "unit": "days"}, "message": "Hello {{name}}"}]
DRIP_BODY = {"name": "Renamed", "steps": STEPS}


@pytest.fixture(autouse=True)
def _generous_rate_limits_and_fast_hashing(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "100000/15m"}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Side:
    name: str
    account: Account
    users: dict[str, User]
    leads: dict[str, Lead] = field(default_factory=dict)
    enrollments: dict[str, Enrollment] = field(default_factory=dict)
    spare: dict[str, Lead] = field(default_factory=dict)  # not enrolled yet
    drip: Drip | None = None


def _populate(side: Side) -> Side:
    side.drip = Drip.objects.create(account=side.account, name="Nurture", created_by=side.users["admin"])
    DripStep.objects.create(drip=side.drip, position=0, delay_amount=1, delay_unit="days", text="Hi")
    assignees = {"unassigned": None, "agent": side.users["agent"], "colleague": side.users["colleague"]}
    for number, key in enumerate(LEAD_KEYS, start=1):
        lead = LeadFactory(account=side.account, name=f"{side.name} {key}", phone=f"+91980000000{number}")
        lead.assigned_to = assignees[key]
        lead.save()
        spare = LeadFactory(account=side.account, name=f"{side.name} spare {key}", phone=f"+91980000001{number}")
        spare.assigned_to = assignees[key]
        spare.save()
        side.leads[key], side.spare[key] = lead, spare
        side.enrollments[key] = Enrollment.objects.create(
            account=side.account, drip=side.drip, lead=lead, next_due_at=timezone.now()
        )
    return side


@pytest.fixture
def world(account, owner, agent, other_account, outsider) -> dict[str, Side]:
    acme = Side(
        "acme",
        account,
        {"admin": owner, "agent": agent, "colleague": UserFactory(account=account, role=User.Role.AGENT)},
    )
    globex = Side(
        "globex",
        other_account,
        {
            "admin": outsider,
            "agent": UserFactory(account=other_account, role=User.Role.AGENT),
            "colleague": UserFactory(account=other_account, role=User.Role.AGENT),
        },
    )
    return {"acme": _populate(acme), "globex": _populate(globex)}


def snapshot() -> dict:
    return {
        "drips": list(Drip.objects.order_by("pk").values()),
        "steps": list(DripStep.objects.order_by("pk").values()),
        "enrollments": list(Enrollment.objects.order_by("pk").values()),
    }


def other(side: str) -> str:
    return "globex" if side == "acme" else "acme"


def routes(target: Side, enrollment: Enrollment, lead_ids: list) -> list[tuple[str, str, dict | None]]:
    base = f"/api/drips/{target.drip.pk}"
    return [
        ("get", base, None),
        ("put", base, DRIP_BODY),
        ("patch", base, {"name": "Renamed"}),
        ("delete", base, None),
        ("post", f"{base}/enroll", {"leadIds": [str(i) for i in lead_ids]}),
        ("get", f"{base}/enrollments", None),
        ("post", f"{base}/enrollments/{enrollment.pk}/stop", None),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("side", SIDES)
def test_another_accounts_drip_is_404_on_every_route_and_nothing_changes(world, side, role):
    me, them = world[side], world[other(side)]
    client = bearer_client(me.users[role])
    before = snapshot()

    for method, path, body in routes(them, them.enrollments["unassigned"], [lead.pk for lead in them.spare.values()]):
        response = getattr(client, method)(path, body, format="json")
        assert response.status_code == 404, (method, path, response.content)
        assert response.json() == {"success": False, "message": response.json()["message"], "error": "NOT_FOUND"}

    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("side", SIDES)
def test_an_enrollment_of_another_account_is_404_even_through_my_drip(world, side, role):
    me, them = world[side], world[other(side)]
    client = bearer_client(me.users[role])

    response = client.post(f"/api/drips/{me.drip.pk}/enrollments/{them.enrollments['unassigned'].pk}/stop")

    assert response.status_code == 404
    assert Enrollment.objects.get(pk=them.enrollments["unassigned"].pk).status == "active"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("side", SIDES)
def test_the_list_shows_only_my_accounts_drips(world, side, role):
    client = bearer_client(world[side].users[role])

    data = client.get("/api/drips").json()["data"]

    assert [drip["id"] for drip in data] == [str(world[side].drip.pk)]
    # The counts are the drip's, whoever enrolled the leads.
    assert data[0]["enrollments"] == {"active": 3, "completed": 0, "stopped": 0, "total": 3}


@pytest.mark.django_db
@pytest.mark.parametrize("side", SIDES)
def test_agents_may_not_create_change_or_delete_drips(world, side):
    me = world[side]
    client = bearer_client(me.users["agent"])
    before = snapshot()
    base = f"/api/drips/{me.drip.pk}"

    answers = [
        client.post("/api/drips", DRIP_BODY, format="json"),
        client.post("/api/drips", {"name": ""}, format="json"),  # refused before its input is even read
        client.put(base, DRIP_BODY, format="json"),
        client.patch(base, {"isActive": False}, format="json"),
        client.delete(base),
    ]

    assert [response.status_code for response in answers] == [403] * 5
    assert {response.json()["error"] for response in answers} == {"PERMISSION_DENIED"}
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("side", SIDES)
def test_admins_manage_their_drips(world, side):
    me = world[side]
    client = bearer_client(me.users["admin"])
    base = f"/api/drips/{me.drip.pk}"

    assert client.post("/api/drips", {**DRIP_BODY, "name": "New"}, format="json").status_code == 201
    assert client.put(base, DRIP_BODY, format="json").json()["data"]["name"] == "Renamed"
    assert client.patch(base, {"isActive": False}, format="json").json()["data"]["isActive"] is False
    assert client.delete(base).status_code == 200
    assert not Drip.objects.filter(pk=me.drip.pk).exists()
    assert Drip.objects.filter(pk=world[other(side)].drip.pk).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("side", SIDES)
def test_everyone_reads_their_drip(world, side, role):
    me = world[side]

    response = bearer_client(me.users[role]).get(f"/api/drips/{me.drip.pk}")

    assert response.status_code == 200 and response.json()["data"]["id"] == str(me.drip.pk)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("side", SIDES)
def test_enroll_takes_only_the_leads_the_user_can_see(world, side, role):
    me, them = world[side], world[other(side)]
    client = bearer_client(me.users[role])
    mine = [me.spare[key].pk for key in LEAD_KEYS]
    foreign = [lead.pk for lead in them.spare.values()]

    data = client.post(
        f"/api/drips/{me.drip.pk}/enroll", {"leadIds": [str(i) for i in mine + foreign]}, format="json"
    ).json()["data"]

    visible = {me.spare[key].pk for key in VISIBLE[role]}
    assert data["enrolled"] == len(visible)
    assert data["invalid"] == len(mine) + len(foreign) - len(visible)
    newly = set(Enrollment.objects.filter(drip=me.drip, lead_id__in=mine + foreign).values_list("lead_id", flat=True))
    assert newly == visible
    assert not Enrollment.objects.filter(lead_id__in=foreign).exclude(drip=them.drip).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("side", SIDES)
def test_the_enrollments_list_shows_the_leads_the_user_can_see(world, side, role):
    me = world[side]

    data = bearer_client(me.users[role]).get(f"/api/drips/{me.drip.pk}/enrollments").json()["data"]

    assert {row["leadId"] for row in data} == {str(me.leads[key].pk) for key in VISIBLE[role]}


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("side", SIDES)
def test_stopping_an_enrollment_needs_a_lead_the_user_can_see(world, side, role):
    me = world[side]
    client = bearer_client(me.users[role])

    answers = {
        key: client.post(f"/api/drips/{me.drip.pk}/enrollments/{me.enrollments[key].pk}/stop").status_code
        for key in LEAD_KEYS
    }

    assert answers == {key: 200 if key in VISIBLE[role] else 404 for key in LEAD_KEYS}
    statuses = {key: Enrollment.objects.get(pk=me.enrollments[key].pk).status for key in LEAD_KEYS}
    assert statuses == {key: "stopped" if key in VISIBLE[role] else "active" for key in LEAD_KEYS}
    assert set(Enrollment.objects.filter(account=world[other(side)].account).values_list("status", flat=True)) == {
        "active"
    }


@pytest.mark.django_db
def test_every_drip_route_needs_a_login(world, api_client):
    me = world["acme"]
    every = [
        ("get", "/api/drips", None),
        ("post", "/api/drips", DRIP_BODY),
        *routes(me, me.enrollments["agent"], [me.spare["agent"].pk]),
    ]
    for method, path, body in every:
        response = getattr(api_client, method)(path, body, format="json")
        assert response.status_code == 401, (method, path)
        assert response.json()["error"] == "NOT_AUTHENTICATED"
    assert Drip.objects.filter(pk=me.drip.pk).exists()
