"""The tenancy matrix: two accounts, two roles, every lead, tag and contact route.

Both accounts are seeded alike (the same phone numbers, a "VIP" tag each, one lead
unassigned, one for the agent, one for a colleague, one for the admin, engagements and
messages), so a query that forgets its account or its role shows up as a foreign row
in an answer or as a changed row in the database.

- Another account's lead or tag answers 404 on every single-object route, exactly like
  a missing one; bulk routes refuse it with VALIDATION_ERROR (agents' bulk-delete is a
  403 before that); a filter or reference naming another account's user or tag is a
  VALIDATION_ERROR. Afterwards both accounts' rows are exactly as before.
- Lists, analytics, contacts and tags show only the caller's account, and for an agent
  only their own and unassigned leads.
- An agent acting on a colleague's (or the admin's) lead gets the same 404."""

import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest

from accounts.models import Account, User
from accounts.tests.factories import UserFactory
from conftest import bearer_client
from leads.models import Engagement, Lead, Tag
from leads.tests.factories import EngagementFactory, LeadFactory, MessageFactory, TagFactory
from messaging.models import Message

SIDES = ["acme", "globex"]
ROLES = ["admin", "agent"]
LEAD_KEYS = ["unassigned", "agent", "colleague", "admin"]
VISIBLE = {"admin": set(LEAD_KEYS), "agent": {"unassigned", "agent"}}
MISSING_TAG_ID = 987654321


@pytest.fixture(autouse=True)
def _generous_rate_limits_and_fast_hashing(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "100000/15m", "auth": "1000/15m"}
    # Users are made by the dozen here; real password hashing is slow on purpose.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Side:
    name: str
    account: Account
    users: dict[str, User]  # admin, agent, colleague
    leads: dict[str, Lead] = field(default_factory=dict)
    vip: Tag | None = None
    only: Tag | None = None
    messages_per_lead: int = 1

    def user(self, role: str) -> User:
        return self.users[role]

    def visible(self, role: str) -> dict[str, Lead]:
        return {key: lead for key, lead in self.leads.items() if key in VISIBLE[role]}


def _populate(side: Side, statuses: dict[str, str]) -> Side:
    title = side.name.title()
    side.vip = TagFactory(account=side.account, name="VIP")
    side.only = TagFactory(account=side.account, name=f"{title} only")
    assignees = {"unassigned": None, **{key: side.users[key] for key in ("agent", "colleague", "admin")}}
    for number, key in enumerate(LEAD_KEYS, start=1):
        lead = LeadFactory(
            account=side.account,
            name=f"{title} {key}",
            # The same phones in both accounts: nothing may look leads up by phone alone.
            phone=f"+91980000000{number}",
            email=f"{key}@{side.name}.test",
            status=statuses[key],
            segment="hot",
            source=f"{title} site",
            assigned_to=assignees[key],
            tags=[side.vip, side.only],
        )
        EngagementFactory(lead=lead, type="call", notes=f"{title} call", user=side.users["admin"])
        MessageFactory.create_batch(side.messages_per_lead, lead=lead, direction=Message.Direction.INBOUND)
        side.leads[key] = lead
    return side


@pytest.fixture
def world(account, owner, agent, other_account, outsider) -> dict[str, Side]:
    acme = Side(
        "acme",
        account,
        {"admin": owner, "agent": agent, "colleague": UserFactory(account=account, email="colleague@acme.test")},
        messages_per_lead=1,
    )
    globex = Side(
        "globex",
        other_account,
        {
            "admin": outsider,
            "agent": UserFactory(account=other_account, email="agent@globex.test", role=User.Role.AGENT),
            "colleague": UserFactory(account=other_account, email="colleague@globex.test", role=User.Role.AGENT),
        },
        messages_per_lead=2,
    )
    _populate(acme, {"unassigned": "pending", "agent": "contacted", "colleague": "qualified", "admin": "converted"})
    _populate(globex, dict.fromkeys(LEAD_KEYS, "lost"))
    return {"acme": acme, "globex": globex}


def snapshot(account: Account) -> dict:
    """Every row of the account that a lead route could touch, field by field."""
    return {
        "leads": list(Lead.objects.filter(account=account).order_by("pk").values()),
        "tags": list(Tag.objects.filter(account=account).order_by("pk").values()),
        "lead_tags": sorted(Lead.tags.through.objects.filter(lead__account=account).values_list("lead_id", "tag_id")),
        "engagements": list(Engagement.objects.filter(lead__account=account).order_by("pk").values()),
        "messages": list(Message.objects.filter(account=account).order_by("pk").values()),
    }


def snapshot_all() -> dict:
    return {account.pk: snapshot(account) for account in Account.objects.order_by("pk")}


def other(side: str) -> str:
    return "globex" if side == "acme" else "acme"


def assert_error(response, status_code: int, code: str) -> dict:
    assert response.status_code == status_code, (response.status_code, response.content)
    body = response.json()
    assert body["success"] is False
    assert body["error"] == code, body
    return body


# --- Routes ----------------------------------------------------------------------------

# Single-object routes, with {lead}/{tag} for the target and {own_lead}/{own_tag} for the
# caller's own (visible) lead and tag.
SINGLE_ROUTES = {
    "get": ("get", "/api/leads/{lead}", None),
    "put": ("put", "/api/leads/{lead}", {"name": "Hijacked", "phone": "9876500000", "status": "lost"}),
    "patch": ("patch", "/api/leads/{lead}", {"name": "Hijacked", "status": "lost", "isOptedOut": True}),
    "delete": ("delete", "/api/leads/{lead}", None),
    "engagement-get": ("get", "/api/leads/{lead}/engagement", None),
    "engagement-post": ("post", "/api/leads/{lead}/engagement", {"type": "note", "notes": "Hijacked"}),
    "lead-tags-post": ("post", "/api/leads/{lead}/tags", {"tags": ["Hijacked", "VIP"]}),
    "lead-tag-delete": ("delete", "/api/leads/{lead}/tags/{tag}", None),
    "lead-tag-delete-own-lead": ("delete", "/api/leads/{own_lead}/tags/{tag}", None),
    "lead-tag-delete-own-tag": ("delete", "/api/leads/{lead}/tags/{own_tag}", None),
    "tag-get": ("get", "/api/tags/{tag}", None),
    "tag-put": ("put", "/api/tags/{tag}", {"name": "Hijacked", "color": "#000000"}),
    "tag-patch": ("patch", "/api/tags/{tag}", {"color": "#000000"}),
    "tag-delete": ("delete", "/api/tags/{tag}", None),
}
LEAD_ONLY_ROUTES = [name for name, (_, path, _) in SINGLE_ROUTES.items() if "{lead}" in path]
BULK_ROUTES = ["bulk-update", "bulk-assign", "bulk-delete"]
LIST_ROUTES = ["list", "list-tag-vip", "list-search-phone", "analytics", "contacts", "tags-list"]
# Requests on the caller's own objects that name another account's user or tag.
REFERENCE_ROUTES = {
    "create-foreign-tag": "tags",
    "create-foreign-assignee": "assignedTo",
    "patch-foreign-tag": "tags",
    "patch-foreign-assignee": "assignedTo",
    "lead-tags-post-foreign-tag": "tags",
    "bulk-assign-foreign-assignee": "assignedTo",
    "filter-foreign-assignee": "assignedTo",
    "filter-foreign-tag-id": "tag",
    "filter-foreign-tag-name": "tag",
}
ALL_ROUTES = [*SINGLE_ROUTES, *BULK_ROUTES, *LIST_ROUTES, *REFERENCE_ROUTES]


def _fill(path: str, *, lead, tag, own_lead, own_tag) -> str:
    return path.format(lead=lead, tag=tag, own_lead=own_lead, own_tag=own_tag)


def _call(client, method: str, path: str, body):
    if body is None:
        return getattr(client, method)(path)
    return getattr(client, method)(path, body, format="json")


def _bulk_request(route: str, actor: User, ids: list) -> tuple[str, dict]:
    body = {"ids": [str(i) for i in ids]}
    if route == "bulk-update":
        body["updates"] = {"status": "lost", "isOptedOut": True}
    elif route == "bulk-assign":
        body["assignedTo"] = str(actor.pk)
    return f"/api/leads/{route}", body


def _reference_request(route: str, me: Side, them: Side) -> tuple[str, str, dict | None]:
    own = me.leads["unassigned"]
    foreign_user, foreign_tag = them.users["admin"], them.only
    return {
        "create-foreign-tag": ("post", "/api/leads", {"name": "N", "phone": "9876511111", "tags": [foreign_tag.pk]}),
        "create-foreign-assignee": (
            "post",
            "/api/leads",
            {"name": "N", "phone": "9876511111", "assignedTo": str(foreign_user.pk)},
        ),
        "patch-foreign-tag": ("patch", f"/api/leads/{own.pk}", {"tags": [foreign_tag.pk]}),
        "patch-foreign-assignee": ("patch", f"/api/leads/{own.pk}", {"assignedTo": str(foreign_user.pk)}),
        "lead-tags-post-foreign-tag": ("post", f"/api/leads/{own.pk}/tags", {"tags": [foreign_tag.pk]}),
        "bulk-assign-foreign-assignee": (
            "post",
            "/api/leads/bulk-assign",
            {"ids": [str(own.pk)], "assignedTo": str(foreign_user.pk)},
        ),
        "filter-foreign-assignee": ("get", f"/api/leads?assignedTo={foreign_user.pk}", None),
        "filter-foreign-tag-id": ("get", f"/api/leads?tag={foreign_tag.pk}", None),
        "filter-foreign-tag-name": ("get", f"/api/leads?tag={foreign_tag.name.replace(' ', '+')}", None),
    }[route]


def _check_list_route(route: str, client, me: Side, role: str) -> None:
    """What the caller sees is exactly their account's (and role's) share."""
    visible = me.visible(role)
    visible_ids = {str(lead.pk) for lead in visible.values()}
    if route in ("list", "list-tag-vip", "list-search-phone"):
        # "VIP" and the phones exist in both accounts: the filters must stay in the caller's.
        params = {"list": {}, "list-tag-vip": {"tag": "VIP"}, "list-search-phone": {"search": "+91 98000"}}[route]
        response = client.get("/api/leads", {"limit": 200, **params})
        assert response.status_code == 200, response.content
        body = response.json()
        assert {row["id"] for row in body["data"]} == visible_ids
        assert body["pagination"]["total"] == len(visible_ids)
        assert {row["name"].split()[0] for row in body["data"]} == {me.name.title()}
    elif route == "analytics":
        response = client.get("/api/leads/analytics")
        assert response.status_code == 200, response.content
        data = response.json()["data"]
        assert data["total"] == len(visible)
        expected_status = Counter(lead.status for lead in visible.values())
        assert {k: v for k, v in data["byStatus"].items() if v} == dict(expected_status)
        assert data["bySegment"]["hot"] == len(visible)
        assert data["bySource"] == [{"source": f"{me.name.title()} site", "count": len(visible)}]
        own_user_ids = {str(user.pk) for user in me.users.values()} | {None}
        assert {row["userId"] for row in data["byAssignee"]} <= own_user_ids
        assert sum(row["count"] for row in data["byAssignee"]) == len(visible)
        assert sum(day["count"] for day in data["createdPerDay"]) == len(visible)
        assert data["messages"] == {"inbound": len(visible) * me.messages_per_lead, "outbound": 0}
        assert data["converted"] == expected_status.get("converted", 0)
    elif route == "contacts":
        response = client.get("/api/contacts")
        assert response.status_code == 200, response.content
        contacts = response.json()
        assert isinstance(contacts, list)
        assert {c["name"] for c in contacts} == {lead.name for lead in visible.values()}
        assert {c["message_count"] for c in contacts} == {me.messages_per_lead}
        assert {c["unread_count"] for c in contacts} == {me.messages_per_lead}
        assert {tag["id"] for c in contacts for tag in c["tags"]} == {me.vip.pk, me.only.pk}
    elif route == "tags-list":
        response = client.get("/api/tags")
        assert response.status_code == 200, response.content
        tags = response.json()["data"]
        # Counts cover only the leads this user can see (an agent: theirs and unassigned).
        assert {tag["id"]: tag["leadCount"] for tag in tags} == {me.vip.pk: len(visible), me.only.pk: len(visible)}
    else:  # pragma: no cover
        raise AssertionError(route)


# --- The matrix ------------------------------------------------------------------------


@pytest.mark.parametrize("route", ALL_ROUTES)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("side", SIDES)
def test_another_accounts_data_is_never_seen_or_changed(world, side, role, route):
    me, them = world[side], world[other(side)]
    actor = me.user(role)
    client = bearer_client(actor)
    before = snapshot_all()

    if route in SINGLE_ROUTES:
        method, path, body = SINGLE_ROUTES[route]
        ids = {"own_lead": me.leads["unassigned"].pk, "own_tag": me.vip.pk}
        foreign = _call(client, method, _fill(path, lead=them.leads["unassigned"].pk, tag=them.vip.pk, **ids), body)
        missing = _call(client, method, _fill(path, lead=uuid.uuid4(), tag=MISSING_TAG_ID, **ids), body)
        assert_error(foreign, 404, "NOT_FOUND")
        # Exactly like a missing one: nothing tells the caller the object exists.
        assert foreign.json() == missing.json()
    elif route in BULK_ROUTES:
        ids = [me.leads["unassigned"].pk, them.leads["unassigned"].pk]
        path, body = _bulk_request(route, actor, ids)
        response = client.post(path, body, format="json")
        if route == "bulk-delete" and role == "agent":
            assert_error(response, 403, "PERMISSION_DENIED")
        else:
            errors = assert_error(response, 400, "VALIDATION_ERROR")["errors"]
            assert "ids" in errors
            assert str(them.leads["unassigned"].pk) in str(errors["ids"])
        # Alone, too.
        path, body = _bulk_request(route, actor, [them.leads["unassigned"].pk])
        assert client.post(path, body, format="json").status_code in (400, 403)
    elif route in LIST_ROUTES:
        _check_list_route(route, client, me, role)
    else:
        method, path, body = _reference_request(route, me, them)
        errors = assert_error(_call(client, method, path, body), 400, "VALIDATION_ERROR")["errors"]
        assert REFERENCE_ROUTES[route] in errors

    assert snapshot_all() == before


# --- Inside one account: agents and admins ---------------------------------------------


@pytest.mark.parametrize("route", [*LEAD_ONLY_ROUTES, *BULK_ROUTES])
@pytest.mark.parametrize("target", ["colleague", "admin"])
@pytest.mark.parametrize("side", SIDES)
def test_an_agent_cannot_reach_a_lead_assigned_to_someone_else(world, side, target, route):
    me = world[side]
    client = bearer_client(me.user("agent"))
    lead = me.leads[target]
    before = snapshot_all()

    if route in SINGLE_ROUTES:
        method, path, body = SINGLE_ROUTES[route]
        filled = _fill(path, lead=lead.pk, tag=me.vip.pk, own_lead=me.leads["agent"].pk, own_tag=me.vip.pk)
        missing = _fill(path, lead=uuid.uuid4(), tag=me.vip.pk, own_lead=me.leads["agent"].pk, own_tag=me.vip.pk)
        response = _call(client, method, filled, body)
        assert_error(response, 404, "NOT_FOUND")
        assert response.json() == _call(client, method, missing, body).json()
    else:
        path, body = _bulk_request(route, me.user("agent"), [me.leads["agent"].pk, lead.pk])
        response = client.post(path, body, format="json")
        if route == "bulk-delete":
            assert_error(response, 403, "PERMISSION_DENIED")
        else:
            assert "ids" in assert_error(response, 400, "VALIDATION_ERROR")["errors"]

    assert snapshot_all() == before


@pytest.mark.parametrize("key", LEAD_KEYS)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("side", SIDES)
def test_who_sees_and_changes_which_lead(world, side, role, key):
    """Admins: every lead of their account. Agents: their own and unassigned ones."""
    me = world[side]
    client = bearer_client(me.user(role))
    lead = me.leads[key]
    url = f"/api/leads/{lead.pk}"
    allowed = key in VISIBLE[role]

    got = client.get(url)
    engagements = client.get(f"{url}/engagement")
    patched = client.patch(url, {"notes": f"Touched by {role}"}, format="json")

    if allowed:
        assert got.status_code == 200 and got.json()["data"]["id"] == str(lead.pk)
        assert engagements.status_code == 200 and engagements.json()["pagination"]["total"] == 1
        assert patched.status_code == 200
        lead.refresh_from_db()
        assert lead.notes == f"Touched by {role}"
    else:
        for response in (got, engagements, patched):
            assert_error(response, 404, "NOT_FOUND")
        lead.refresh_from_db()
        assert lead.notes == ""


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("side", SIDES)
def test_bulk_routes_act_on_every_visible_lead(world, side, role):
    me = world[side]
    actor = me.user(role)
    client = bearer_client(actor)
    visible = me.visible(role)
    ids = [str(lead.pk) for lead in visible.values()]

    updated = client.post("/api/leads/bulk-update", {"ids": ids, "updates": {"segment": "cold"}}, format="json").json()
    assigned = client.post("/api/leads/bulk-assign", {"ids": ids, "assignedTo": str(actor.pk)}, format="json").json()

    assert updated["data"] == {"count": len(ids)}
    assert assigned["data"] == {"count": len(ids)}
    visible_pks = {lead.pk for lead in visible.values()}
    assert set(Lead.objects.filter(segment="cold").values_list("pk", flat=True)) == visible_pks
    assert set(Lead.objects.filter(assigned_to=actor).values_list("pk", flat=True)) == visible_pks
    # The other account is untouched.
    assert not Lead.objects.filter(account=world[other(side)].account, segment="cold").exists()


def test_an_agent_claiming_an_unassigned_lead_hides_it_from_colleagues(world):
    me = world["acme"]
    lead = me.leads["unassigned"]
    agent, colleague = bearer_client(me.user("agent")), bearer_client(me.user("colleague"))

    assert colleague.get(f"/api/leads/{lead.pk}").status_code == 200
    claimed = agent.patch(f"/api/leads/{lead.pk}", {"assignedTo": str(me.user("agent").pk)}, format="json")

    assert claimed.status_code == 200
    assert_error(colleague.get(f"/api/leads/{lead.pk}"), 404, "NOT_FOUND")
    assert str(lead.pk) not in {row["id"] for row in colleague.get("/api/leads").json()["data"]}


def test_a_lead_created_by_an_outsider_with_a_shared_phone_stays_in_their_account(world):
    """The same phone exists in both accounts: each account's create/update checks only its own."""
    me, them = world["acme"], world["globex"]
    client = bearer_client(me.user("admin"))
    before = snapshot(them.account)

    duplicate = client.post("/api/leads", {"name": "Dup", "phone": "9800000001"}, format="json")
    moved = client.patch(f"/api/leads/{me.leads['agent'].pk}", {"phone": "+91 98000 00009"}, format="json")

    assert_error(duplicate, 400, "VALIDATION_ERROR")
    assert moved.status_code == 200
    assert Lead.objects.filter(phone="+919800000009").get().account_id == me.account.pk
    assert snapshot(them.account) == before
