"""The tenancy matrix of HeyDoc's scheduled messages: two accounts, two roles, every
route. Admins see and manage every scheduled message of their account; agents the
ones they created; anything else — another account's, a colleague's — answers 404
exactly like a missing id, and changes nothing."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import User
from accounts.tests.factories import UserFactory
from campaigns.models import ScheduledMessage
from campaigns.services import scheduled as services
from conftest import bearer_client

URL = "/api/scheduled-messages"
SIDES = ["acme", "globex"]
ROLES = ["admin", "agent"]
KEYS = ["by_admin", "by_agent", "by_colleague"]
VISIBLE = {"admin": set(KEYS), "agent": {"by_agent"}}


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "100000/15m"}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(account, owner, agent, other_account, outsider) -> dict:
    users = {
        "acme": {
            "admin": owner,
            "agent": agent,
            "colleague": UserFactory(account=account, email="colleague@acme.test", role=User.Role.AGENT),
        },
        "globex": {
            "admin": outsider,
            "agent": UserFactory(account=other_account, email="agent@globex.test", role=User.Role.AGENT),
            "colleague": UserFactory(account=other_account, email="colleague@globex.test", role=User.Role.AGENT),
        },
    }
    when = timezone.now() + timedelta(hours=3)
    rows = {}
    for side in SIDES:
        for key, creator in (("by_admin", "admin"), ("by_agent", "agent"), ("by_colleague", "colleague")):
            rows[side, key] = services.scheduled_message_create(
                user=users[side][creator],
                message=f"{side} {key}",
                # The same phone in both accounts: nothing may look anything up by phone alone.
                recipients=["919800000001"],
                scheduled_time=when,
            )
    return {"users": users, "rows": rows}


def snapshot() -> list[dict]:
    return list(ScheduledMessage.objects.order_by("pk").values())


def client_of(world: dict, side: str, role: str):
    return bearer_client(world["users"][side][role])


def expected_ids(world: dict, side: str, role: str) -> set[int]:
    return {world["rows"][side, key].pk for key in VISIBLE[role]}


@pytest.mark.django_db
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("path", [URL, f"{URL}/pending"])
def test_lists_show_only_what_the_caller_may_see(world, side, role, path):
    r = client_of(world, side, role).get(path)

    assert r.status_code == 200
    assert {item["id"] for item in r.json()} == expected_ids(world, side, role)
    assert {item["message"].split()[0] for item in r.json()} == {side}
    assert r["X-Total-Count"] == str(len(VISIBLE[role]))


@pytest.mark.django_db
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("role", ROLES)
def test_create_belongs_to_the_callers_account_and_creator(world, side, role):
    caller = world["users"][side][role]
    when = (timezone.now() + timedelta(hours=5)).isoformat()

    r = client_of(world, side, role).post(
        URL, {"message": "Mine", "recipients": ["919800000001"], "scheduled_time": when}, format="json"
    )

    assert r.status_code == 201, r.content
    created = ScheduledMessage.objects.get(pk=r.json()["data"]["id"])
    assert (created.account_id, created.created_by_id) == (caller.account_id, caller.pk)
    assert r.json()["data"]["created_by"] == caller.email


def _single_routes(client, pk: int) -> dict:
    return {
        "get": lambda: client.get(f"{URL}/{pk}"),
        "status": lambda: client.put(f"{URL}/{pk}/status", {"status": "cancelled"}, format="json"),
        "delete": lambda: client.delete(f"{URL}/{pk}"),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("target_side", SIDES)
@pytest.mark.parametrize("target", KEYS)
@pytest.mark.parametrize("route", ["get", "status", "delete"])
def test_single_routes_answer_404_for_what_the_caller_may_not_see(world, side, role, target_side, target, route):
    row = world["rows"][target_side, target]
    visible = target_side == side and target in VISIBLE[role]
    before = snapshot()

    r = _single_routes(client_of(world, side, role), row.pk)[route]()

    if visible:
        assert r.status_code == 200, r.content
        if route == "get":
            assert r.json()["id"] == row.pk
        else:
            assert r.json()["success"] is True
        after = ScheduledMessage.objects.filter(pk=row.pk).values_list("status", flat=True).first()
        assert after == {"get": "pending", "status": "cancelled", "delete": None}[route]
        assert [r for r in snapshot() if r["id"] != row.pk] == [r for r in before if r["id"] != row.pk]
    else:
        assert r.status_code == 404, r.content
        assert r.json() == {"success": False, "message": "Scheduled message not found.", "error": "NOT_FOUND"}
        assert snapshot() == before
