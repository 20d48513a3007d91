"""HeyDoc's GET /api/contacts: a bare JSON array of {phone, name, last_message,
message_count, unread_count, is_group, tags[{id, name, color}]}, latest conversation
first, for the leads the user can see, in a constant number of queries."""

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.tests.factories import PASSWORD
from leads.models import Lead, Tag
from messaging.models import Message

pytestmark = pytest.mark.django_db

URL = "/api/contacts"
CONTACT_KEYS = {"phone", "name", "last_message", "message_count", "unread_count", "is_group", "tags"}
NOW = timezone.now().replace(microsecond=0)


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings):
    settings.RATE_LIMITS = {
        **settings.RATE_LIMITS,
        "standard": "100000/15m",
        "auth": "1000/15m",
        "webhook": "100000/15m",
    }


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


_phones = iter(range(10_000_000))


def make_lead(account, name: str = "", **fields) -> Lead:
    n = next(_phones)
    return Lead.objects.create(
        account=account, name=name or f"Lead {n}", phone=fields.pop("phone", f"+9198{n:08d}"), **fields
    )


def add_message(lead: Lead, body: str, *, inbound: bool = True, is_read: bool = False, at=None) -> Message:
    """A message on the lead, keeping Lead.last_message_at (and the last in/out times)
    in step the way the messaging services do."""
    at = at or NOW
    direction = Message.Direction.INBOUND if inbound else Message.Direction.OUTBOUND
    message = Message.objects.create(
        account_id=lead.account_id, lead=lead, direction=direction, body=body, is_read=is_read, created_at=at
    )
    changes = {}
    if lead.last_message_at is None or at > lead.last_message_at:
        changes["last_message_at"] = at
    side = "last_inbound_at" if inbound else "last_outbound_at"
    if getattr(lead, side) is None or at > getattr(lead, side):
        changes[side] = at
    if changes:
        Lead.objects.filter(pk=lead.pk).update(**changes)
        for field, value in changes.items():
            setattr(lead, field, value)
    return message


def get_contacts(client, path: str = URL, **params):
    r = client.get(path, params)
    assert r.status_code == 200, r.content
    assert r["Content-Type"].startswith("application/json")
    return r


def by_phone(contacts: list) -> dict:
    return {contact["phone"]: contact for contact in contacts}


# --- Shape -------------------------------------------------------------------------------


def test_the_answer_is_a_bare_array_of_the_documents_fields(owner_client, account):
    lead = make_lead(account, "John Doe", phone="+919876543210")
    family = Tag.objects.create(account=account, name="Family", color="#ff4444")
    lead.tags.add(family)
    add_message(lead, "Hi, is this available?", inbound=True, at=NOW - timedelta(minutes=5))
    add_message(lead, "Hello there!", inbound=False, at=NOW)

    body = get_contacts(owner_client).json()

    assert isinstance(body, list)
    assert len(body) == 1
    contact = body[0]
    assert set(contact) == CONTACT_KEYS
    assert contact == {
        "phone": "919876543210",
        "name": "John Doe",
        "last_message": "Hello there!",
        "message_count": 2,
        "unread_count": 1,
        "is_group": False,
        "tags": [{"id": family.pk, "name": "Family", "color": "#ff4444"}],
    }
    assert type(contact["tags"][0]["id"]) is int
    assert type(contact["message_count"]) is int and type(contact["unread_count"]) is int


def test_a_contact_without_messages_or_tags(owner_client, account):
    make_lead(account, "Quiet Person", phone="+14155552671")

    (contact,) = get_contacts(owner_client).json()

    assert contact == {
        "phone": "14155552671",
        "name": "Quiet Person",
        "last_message": "",
        "message_count": 0,
        "unread_count": 0,
        "is_group": False,
        "tags": [],
    }


def test_an_account_without_leads_gets_an_empty_array(owner_client, account):
    r = get_contacts(owner_client)

    assert r.json() == []
    assert r["X-Total-Count"] == "0"


def test_counts_of_messages_both_ways_and_of_unread_inbound(owner_client, account):
    lead = make_lead(account, phone="+919811111111")
    add_message(lead, "in, read", inbound=True, is_read=True, at=NOW - timedelta(minutes=9))
    add_message(lead, "in, unread 1", inbound=True, at=NOW - timedelta(minutes=8))
    add_message(lead, "out 1", inbound=False, at=NOW - timedelta(minutes=7))
    add_message(lead, "in, unread 2", inbound=True, at=NOW - timedelta(minutes=6))
    add_message(lead, "out 2 (never read-marked)", inbound=False, is_read=False, at=NOW - timedelta(minutes=5))
    add_message(lead, "the newest", inbound=False, at=NOW - timedelta(minutes=1))
    other = make_lead(account, phone="+919822222222")
    add_message(other, "someone else's", inbound=True, at=NOW)

    contacts = by_phone(get_contacts(owner_client).json())

    mine = contacts["919811111111"]
    assert mine["message_count"] == 6
    assert mine["unread_count"] == 2
    assert mine["last_message"] == "the newest"
    assert contacts["919822222222"]["message_count"] == 1
    assert contacts["919822222222"]["unread_count"] == 1


def test_the_last_message_is_the_newest_not_the_last_written(owner_client, account):
    lead = make_lead(account, phone="+919811111111")
    add_message(lead, "newest", at=NOW)
    add_message(lead, "older, written later", at=NOW - timedelta(hours=2))

    (contact,) = get_contacts(owner_client).json()

    assert contact["last_message"] == "newest"


def test_contacts_are_ordered_by_latest_message_and_silent_ones_last(owner_client, account):
    make_lead(account, "Silent old", created_at=NOW - timedelta(days=3))
    talked_yesterday = make_lead(account, "Yesterday", created_at=NOW - timedelta(days=10))
    make_lead(account, "Silent new", created_at=NOW - timedelta(days=1))
    talked_now = make_lead(account, "Now", created_at=NOW - timedelta(days=20))
    talked_last_week = make_lead(account, "Last week", created_at=NOW)
    add_message(talked_yesterday, "y", at=NOW - timedelta(days=1))
    add_message(talked_now, "n", inbound=False, at=NOW - timedelta(minutes=1))
    add_message(talked_last_week, "w", at=NOW - timedelta(days=7))

    names = [c["name"] for c in get_contacts(owner_client).json()]

    assert names[:3] == ["Now", "Yesterday", "Last week"]
    assert set(names[3:]) == {"Silent old", "Silent new"}  # after every conversation


def test_is_group_is_always_false(owner_client, account):
    for _ in range(3):
        add_message(make_lead(account), "hi")

    assert {c["is_group"] for c in get_contacts(owner_client).json()} == {False}


def test_tags_are_listed_with_id_name_and_color(owner_client, account):
    lead = make_lead(account, phone="+919811111111")
    vip = Tag.objects.create(account=account, name="VIP", color="#00aa00")
    family = Tag.objects.create(account=account, name="Family", color="#ff4444")
    Tag.objects.create(account=account, name="Unused", color="#000000")
    lead.tags.add(vip, family)

    (contact,) = get_contacts(owner_client).json()

    tags = sorted(contact["tags"], key=lambda t: t["name"])
    assert tags == [
        {"id": family.pk, "name": "Family", "color": "#ff4444"},
        {"id": vip.pk, "name": "VIP", "color": "#00aa00"},
    ]
    assert all(set(tag) == {"id", "name", "color"} and type(tag["id"]) is int for tag in tags)


def test_stored_text_comes_back_as_plain_json_strings(owner_client, account):
    lead = make_lead(account, "Ana <Ops>", phone="+919811111111")
    add_message(lead, 'He said "<b>hi</b>" & left')

    (contact,) = get_contacts(owner_client).json()

    assert contact["name"] == "Ana <Ops>"
    assert contact["last_message"] == 'He said "<b>hi</b>" & left'


# --- Auth --------------------------------------------------------------------------------


def test_a_session_login_is_enough(owner, account):
    lead = make_lead(account, "Session Seen", phone="+919811111111")
    add_message(lead, "hello")
    browser = Client(enforce_csrf_checks=True)
    login = browser.post(
        "/login", json.dumps({"email": owner.email, "password": PASSWORD}), content_type="application/json"
    )
    assert login.status_code == 200, login.content
    assert login.cookies["sessionid"].value

    (contact,) = get_contacts(browser).json()

    assert contact["name"] == "Session Seen"
    assert contact["last_message"] == "hello"


def test_a_session_login_with_the_username_field_works_too(owner, account):
    make_lead(account, "Session Seen")
    browser = Client()
    login = browser.post(
        "/login", json.dumps({"username": owner.email, "password": PASSWORD}), content_type="application/json"
    )
    assert login.status_code == 200, login.content

    assert [c["name"] for c in get_contacts(browser).json()] == ["Session Seen"]


def test_a_bearer_token_works(owner_client, account):
    make_lead(account, "Bearer Seen")

    assert [c["name"] for c in get_contacts(owner_client).json()] == ["Bearer Seen"]


def test_anonymous_requests_are_refused_in_the_envelope(api_client, account):
    make_lead(account)

    r = api_client.get(URL)

    assert r.status_code == 401
    assert r.json()["success"] is False
    assert r.json()["error"] == "NOT_AUTHENTICATED"


def test_after_logout_the_session_sees_nothing(owner, account):
    make_lead(account)
    browser = Client()
    browser.post("/login", json.dumps({"email": owner.email, "password": PASSWORD}), content_type="application/json")
    assert get_contacts(browser).json()

    browser.get("/logout", HTTP_ACCEPT="application/json")

    assert browser.get(URL).status_code == 401


@pytest.mark.parametrize("path", [URL, URL + "/"])
def test_with_and_without_a_trailing_slash(owner_client, account, path):
    make_lead(account, "Slash")

    r = owner_client.get(path)

    assert r.status_code == 200, r.content
    assert [c["name"] for c in r.json()] == ["Slash"]


# --- Scope -------------------------------------------------------------------------------


def test_an_agent_sees_their_own_and_unassigned_contacts(agent_client, account, owner, agent):
    make_lead(account, "Mine", assigned_to=agent)
    make_lead(account, "Nobody's")
    make_lead(account, "The owner's", assigned_to=owner)

    names = {c["name"] for c in get_contacts(agent_client).json()}

    assert names == {"Mine", "Nobody's"}


def test_an_admin_sees_every_contact_of_the_account(owner_client, account, owner, agent):
    make_lead(account, "Agent's", assigned_to=agent)
    make_lead(account, "Nobody's")
    make_lead(account, "The owner's", assigned_to=owner)

    r = get_contacts(owner_client)

    assert {c["name"] for c in r.json()} == {"Agent's", "Nobody's", "The owner's"}
    assert r["X-Total-Count"] == "3"


def test_the_agents_total_counts_only_their_scope(agent_client, account, owner, agent):
    make_lead(account, assigned_to=agent)
    make_lead(account, assigned_to=owner)
    make_lead(account, assigned_to=owner)

    assert get_contacts(agent_client)["X-Total-Count"] == "1"


def test_another_accounts_contacts_never_appear(owner_client, outsider_client, account, other_account):
    mine = make_lead(account, "Ours", phone="+919811111111")
    theirs = make_lead(other_account, "Theirs", phone="+919811111111")  # the same phone, too
    add_message(mine, "ours")
    add_message(theirs, "theirs", at=NOW + timedelta(minutes=1))
    add_message(theirs, "theirs again", at=NOW + timedelta(minutes=2))

    (ours,) = get_contacts(owner_client).json()
    (their_view,) = get_contacts(outsider_client).json()

    assert (ours["name"], ours["last_message"], ours["message_count"]) == ("Ours", "ours", 1)
    assert (their_view["name"], their_view["last_message"], their_view["message_count"]) == (
        "Theirs",
        "theirs again",
        2,
    )


# --- Bounds and cost ---------------------------------------------------------------------


@pytest.fixture
def five_contacts(account) -> list[str]:
    """Five contacts whose latest messages are one minute apart; names newest first."""
    names = []
    for i in range(5):
        lead = make_lead(account, f"Contact {i}")
        add_message(lead, f"message {i}", at=NOW - timedelta(minutes=i))
        names.append(lead.name)
    return names


def test_limit_bounds_the_array_and_the_header_carries_the_total(owner_client, five_contacts):
    r = get_contacts(owner_client, limit=2)

    assert [c["name"] for c in r.json()] == five_contacts[:2]
    assert r["X-Total-Count"] == "5"


def test_page_walks_through_the_contacts(owner_client, five_contacts):
    pages = [[c["name"] for c in get_contacts(owner_client, limit=2, page=page).json()] for page in (1, 2, 3)]

    assert pages == [five_contacts[:2], five_contacts[2:4], five_contacts[4:]]


def test_a_page_past_the_end_is_an_empty_array(owner_client, five_contacts):
    r = get_contacts(owner_client, limit=2, page=4)

    assert r.json() == []
    assert r["X-Total-Count"] == "5"


def test_without_limit_every_contact_comes(owner_client, five_contacts):
    assert [c["name"] for c in get_contacts(owner_client).json()] == five_contacts


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": "abc"}, {"page": 0}, {"page": -1}])
def test_a_bad_limit_or_page_is_a_validation_error(owner_client, five_contacts, params):
    r = owner_client.get(URL, params)

    assert r.status_code == 400
    assert r.json()["success"] is False
    assert r.json()["error"] == "VALIDATION_ERROR"


def test_the_total_header_is_readable_by_browser_clients(owner_client, five_contacts, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.heroshhi.test"]

    r = owner_client.get(URL, HTTP_ORIGIN="https://app.heroshhi.test")

    assert r["Access-Control-Allow-Origin"] == "https://app.heroshhi.test"
    exposed = {h.strip().lower() for h in r.get("Access-Control-Expose-Headers", "").split(",")}
    assert "x-total-count" in exposed


def _populate(account, start: int, count: int, tags: list[Tag]) -> None:
    for i in range(start, start + count):
        lead = make_lead(account, f"Contact {i}")
        lead.tags.add(*tags[i % 2 :])
        add_message(lead, f"in {i}", inbound=True, at=NOW - timedelta(minutes=i, seconds=30))
        add_message(lead, f"out {i}", inbound=False, at=NOW - timedelta(minutes=i))


@pytest.mark.parametrize("client_name", ["owner_client", "agent_client"])
def test_the_number_of_queries_does_not_grow_with_the_contacts(request, account, client_name):
    client = request.getfixturevalue(client_name)
    tags = [Tag.objects.create(account=account, name=n, color="#123456") for n in ("Family", "VIP")]
    _populate(account, 0, 3, tags)
    get_contacts(client)  # the first request of a rate-limit window writes its counter

    with CaptureQueriesContext(connection) as three:
        small = get_contacts(client).json()
    _populate(account, 3, 27, tags)
    with CaptureQueriesContext(connection) as thirty:
        large = get_contacts(client).json()

    assert len(small) == 3 and len(large) == 30
    assert all(c["message_count"] == 2 and c["unread_count"] == 1 for c in large)
    assert all(c["tags"] for c in large)
    assert len(thirty.captured_queries) == len(three.captured_queries), [q["sql"] for q in thirty.captured_queries]
