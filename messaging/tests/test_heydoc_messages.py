"""HeyDoc's message routes: GET /api/messages/{phone}?limit=20 (a bare array of its
message shape, incoming/outgoing, newest `limit` in chronological order) and
POST /api/send_message {phone_number, message} → {success, data, message}; the one
/api/messages/<ref> view telling phones from lead ids; session (with CSRF) and JWT."""

import itertools
import json
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.tests.factories import PASSWORD
from leads.models import Lead
from messaging.models import Message

pytestmark = pytest.mark.django_db

HEYDOC_KEYS = {
    "id",
    "message_id",
    "sender_phone",
    "receiver_phone",
    "message_type",
    "message_text",
    "timestamp",
    "direction",
    "is_read",
    "status",
}
NOW = timezone.now().replace(microsecond=0)
_numbers = itertools.count(1)


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "100000/15m", "auth": "1000/15m"}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_lead(account, *, window: bool = True, **fields) -> Lead:
    n = next(_numbers)
    return Lead.objects.create(
        account=account,
        name=fields.pop("name", f"Lead {n}"),
        phone=fields.pop("phone", f"+9194{n:08d}"),
        last_inbound_at=NOW - timedelta(hours=1) if window else None,
        **fields,
    )


def add_message(lead: Lead, body: str, *, inbound: bool, at, **fields) -> Message:
    return Message.objects.create(
        account_id=lead.account_id,
        lead=lead,
        direction=Message.Direction.INBOUND if inbound else Message.Direction.OUTBOUND,
        body=body,
        created_at=at,
        **fields,
    )


@pytest.fixture
def lead(account) -> Lead:
    return make_lead(account, name="Asha", phone="+919876543210")


# --- GET /api/messages/{phone} -----------------------------------------------------------------


def test_history_is_a_bare_array_of_heydocs_shape(owner_client, lead):
    inbound = add_message(
        lead, "Hello!", inbound=True, at=NOW - timedelta(minutes=2), wamid="wamid.in1", is_read=True, status="delivered"
    )
    outbound = add_message(
        lead, "Hi Asha", inbound=False, at=NOW - timedelta(minutes=1), wamid="wamid.out1", status="delivered"
    )

    r = owner_client.get("/api/messages/919876543210?limit=20")

    assert r.status_code == 200, r.content
    body = r.json()
    assert isinstance(body, list)
    assert [set(m) for m in body] == [HEYDOC_KEYS, HEYDOC_KEYS]
    assert body[0] == {
        "id": str(inbound.pk),
        "message_id": "wamid.in1",
        "sender_phone": "919876543210",
        "receiver_phone": "sandbox",
        "message_type": "text",
        "message_text": "Hello!",
        "timestamp": (NOW - timedelta(minutes=2)).isoformat().replace("+00:00", "Z"),
        "direction": "incoming",
        "is_read": True,
        "status": "delivered",
    }
    assert body[1]["id"] == str(outbound.pk)
    assert body[1]["direction"] == "outgoing"
    assert body[1]["sender_phone"] == "sandbox"
    assert body[1]["receiver_phone"] == "919876543210"
    assert body[1]["is_read"] is False  # delivered, not read by the contact


def test_history_uses_the_connected_business_number(owner_client, lead, whatsapp_connection):
    add_message(lead, "Hi", inbound=False, at=NOW)
    add_message(lead, "Yo", inbound=True, at=NOW + timedelta(seconds=1))

    body = owner_client.get("/api/messages/919876543210").json()

    assert body[0]["sender_phone"] == "15550101001"
    assert body[1]["receiver_phone"] == "15550101001"


def test_history_is_the_newest_limit_in_chronological_order(owner_client, lead):
    for i in range(30):
        add_message(lead, f"m{i:02d}", inbound=i % 2 == 0, at=NOW - timedelta(minutes=30 - i))

    default = owner_client.get("/api/messages/919876543210").json()
    five = owner_client.get("/api/messages/919876543210?limit=5").json()

    assert [m["message_text"] for m in default] == [f"m{i:02d}" for i in range(10, 30)]
    assert [m["message_text"] for m in five] == ["m25", "m26", "m27", "m28", "m29"]


def test_history_limit_is_capped_at_200(owner_client, lead):
    Message.objects.bulk_create(
        Message(
            account_id=lead.account_id,
            lead=lead,
            direction=Message.Direction.INBOUND,
            body=f"m{i}",
            created_at=NOW - timedelta(seconds=i),
        )
        for i in range(210)
    )

    assert len(owner_client.get("/api/messages/919876543210?limit=1000").json()) == 200


@pytest.mark.parametrize("limit", ["0", "-1", "many"])
def test_history_refuses_a_bad_limit(owner_client, lead, limit):
    r = owner_client.get(f"/api/messages/919876543210?limit={limit}")

    assert r.status_code == 400
    assert r.json()["error"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("written", ["919876543210", "+919876543210", "9876543210", "%2B919876543210"])
def test_history_accepts_the_phone_as_heydoc_clients_write_it(owner_client, lead, written):
    add_message(lead, "Hi", inbound=True, at=NOW)

    r = owner_client.get(f"/api/messages/{written}/")

    assert r.status_code == 200, r.content
    assert [m["message_text"] for m in r.json()] == ["Hi"]


def test_history_marks_nothing_read_unless_asked(owner_client, lead):
    add_message(lead, "one", inbound=True, at=NOW)
    add_message(lead, "two", inbound=True, at=NOW + timedelta(seconds=1))

    plain = owner_client.get("/api/messages/919876543210").json()

    assert [m["is_read"] for m in plain] == [False, False]
    assert Message.objects.filter(is_read=False).count() == 2

    marked = owner_client.get("/api/messages/919876543210?mark_read=1").json()

    assert [m["is_read"] for m in marked] == [True, True]
    assert not Message.objects.filter(is_read=False).exists()


def test_history_of_an_unknown_phone_is_empty(owner_client, lead):
    r = owner_client.get("/api/messages/919800000000")

    assert r.status_code == 200
    assert r.json() == []


def test_history_of_another_accounts_contact_is_empty_and_leaks_nothing(outsider_client, lead):
    add_message(lead, "private", inbound=True, at=NOW)

    r = outsider_client.get("/api/messages/919876543210?mark_read=1")

    assert r.json() == []
    assert Message.objects.get().is_read is False


def test_history_of_a_contact_the_agent_cant_see_is_empty(agent_client, lead, owner):
    lead.assigned_to = owner
    lead.save()
    add_message(lead, "for the owner", inbound=True, at=NOW)

    assert agent_client.get("/api/messages/919876543210").json() == []


def test_history_of_an_impossible_phone_is_a_validation_error(owner_client):
    r = owner_client.get("/api/messages/12")

    assert r.status_code == 400
    assert r.json()["error"] == "VALIDATION_ERROR"


def test_history_needs_a_login():
    assert Client().get("/api/messages/919876543210").status_code == 401


def test_history_shows_the_media_type(owner_client, lead):
    add_message(lead, "", inbound=True, at=NOW, type=Message.Type.MEDIA, media={"type": "image", "id": "m1"})

    assert owner_client.get("/api/messages/919876543210").json()[0]["message_type"] == "image"


def test_history_runs_in_constant_queries(owner_client, lead, django_assert_max_num_queries):
    add_message(lead, "one", inbound=True, at=NOW)
    owner_client.get("/api/messages/919876543210")  # warm up the rate-limit counter
    with django_assert_max_num_queries(20) as few:
        owner_client.get("/api/messages/919876543210?limit=200")
    for i in range(50):
        add_message(lead, f"m{i}", inbound=i % 2 == 0, at=NOW + timedelta(seconds=i + 1))

    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(owner_client.get("/api/messages/919876543210?limit=200").json()) == 51


# --- One view for /api/messages/<ref> ----------------------------------------------------------


def test_one_path_serves_lead_ids_phones_and_the_fixed_routes(owner_client, lead):
    add_message(lead, "Hi", inbound=True, at=NOW)

    by_lead = owner_client.get(f"/api/messages/{lead.pk}").json()
    by_phone = owner_client.get("/api/messages/919876543210").json()
    templates = owner_client.get("/api/messages/templates").json()
    send = owner_client.get("/api/messages/send")

    assert by_lead["success"] is True and by_lead["data"][0]["direction"] == "inbound"
    assert by_phone[0]["direction"] == "incoming"
    assert templates["success"] is True and templates["provider"] == "sandbox"
    assert send.status_code == 405
    assert owner_client.get(f"/api/messages/{uuid.uuid4()}").status_code == 404
    assert owner_client.get("/api/messages/abc123").status_code == 404


# --- POST /api/send_message --------------------------------------------------------------------


def test_send_message_answers_heydocs_envelope(owner_client, owner, lead):
    r = owner_client.post(
        "/api/send_message", {"phone_number": "919876543210", "message": "Hello from the bot!"}, format="json"
    )

    assert r.status_code == 200, r.content
    body = r.json()
    assert set(body) == {"success", "data", "message"}
    assert body["success"] is True
    assert body["message"] == "Message sent successfully"
    data = body["data"]
    assert set(data) == HEYDOC_KEYS | {"lead_id"}
    assert data["lead_id"] == str(lead.pk)
    assert data["direction"] == "outgoing"
    assert data["message_text"] == "Hello from the bot!"
    assert data["sender_phone"] == "sandbox"
    assert data["receiver_phone"] == "919876543210"
    assert data["message_id"].startswith("wamid.sandbox.")
    assert data["status"] == "sent"
    message = Message.objects.get()
    assert (message.source, message.sent_by) == ("api", owner)


def test_send_message_to_an_unknown_phone_creates_the_lead_then_the_window_closes_it(owner_client, account):
    r = owner_client.post("/api/send_message", {"phone_number": "+91 98111 22233", "message": "Hello!"}, format="json")

    assert r.status_code == 400
    assert r.json()["error"] == "WINDOW_CLOSED"
    created = Lead.objects.get(account=account)
    assert created.phone == "+919811122233"
    assert created.name == "919811122233"
    assert created.source == "api"
    assert not Message.objects.exists()

    again = owner_client.post("/api/send_message", {"phone_number": "919811122233", "message": "Hi"}, format="json")
    assert again.json()["error"] == "WINDOW_CLOSED"
    assert Lead.objects.filter(account=account).count() == 1


def test_send_message_with_a_template_reaches_a_new_contact(owner_client, account):
    r = owner_client.post(
        "/api/send_message",
        {"phone_number": "919811122244", "template": {"name": "hello_world", "params": ["Acme"]}},
        format="json",
    )

    assert r.status_code == 200, r.content
    assert r.json()["data"]["message_type"] == "template"
    assert r.json()["data"]["message_text"] == "Hello from Acme!"
    assert Lead.objects.get(account=account).source == "api"


def test_send_message_to_an_opted_out_contact_is_blocked(owner_client, account):
    make_lead(account, phone="+919811122255", is_opted_out=True)

    r = owner_client.post("/api/send_message", {"phone_number": "919811122255", "message": "Hi"}, format="json")

    assert r.status_code == 400
    assert r.json() == {
        "success": False,
        "message": "Cannot send message - contact has opted out",
        "error": "OPT_OUT_BLOCKED",
    }


def test_send_message_through_the_cloud_api(owner_client, lead, whatsapp_connection, fake_graph):
    r = owner_client.post("/api/send_message", {"phone_number": "919876543210", "message": "Hi"}, format="json")

    assert r.status_code == 200, r.content
    assert r.json()["data"]["sender_phone"] == "15550101001"
    assert [m["to"] for m in fake_graph.sent_messages()] == ["919876543210"]


def test_send_message_to_another_accounts_contact_creates_its_own_lead(outsider_client, outsider, lead):
    r = outsider_client.post("/api/send_message", {"phone_number": "919876543210", "message": "Hi"}, format="json")

    assert r.json()["error"] == "WINDOW_CLOSED"  # a new contact for Globex: its own lead, no window
    assert Lead.objects.filter(phone="+919876543210").count() == 2
    assert not Message.objects.exists()
    lead.refresh_from_db()
    assert lead.name == "Asha"


def test_send_message_by_an_agent_to_a_colleagues_contact_is_404(agent_client, account, owner):
    make_lead(account, phone="+919811122266", assigned_to=owner)

    r = agent_client.post("/api/send_message", {"phone_number": "919811122266", "message": "Hi"}, format="json")

    assert r.status_code == 404
    assert Lead.objects.filter(phone="+919811122266").count() == 1


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"phone_number": "919876543210"},
        {"message": "Hi"},
        {"phone_number": "12", "message": "Hi"},
        {"phone_number": "919876543210", "message": "Hi", "template": {"name": "hello_world"}},
    ],
)
def test_send_message_validates_its_input(owner_client, lead, payload):
    r = owner_client.post("/api/send_message", payload, format="json")

    assert r.status_code == 400
    assert r.json()["error"] == "VALIDATION_ERROR"
    assert Lead.objects.count() == 1


# --- Session and JWT ---------------------------------------------------------------------------


@pytest.fixture
def session(owner) -> Client:
    """A HeyDoc client: logged in with POST /login, CSRF checks on."""
    client = Client(enforce_csrf_checks=True)
    r = client.post("/login", json.dumps({"email": owner.email, "password": PASSWORD}), content_type="application/json")
    assert r.status_code == 200, r.content
    return client


def test_session_client_reads_history(session, lead):
    add_message(lead, "Hi", inbound=True, at=NOW)

    r = session.get("/api/messages/919876543210?limit=20")

    assert r.status_code == 200
    assert [m["message_text"] for m in r.json()] == ["Hi"]


def test_session_send_needs_the_csrf_token(session, lead):
    payload = json.dumps({"phone_number": "919876543210", "message": "Hi"})

    refused = session.post("/api/send_message", payload, content_type="application/json")

    assert refused.status_code == 403
    assert refused.json()["error"] == "CSRF_FAILED"
    assert not Message.objects.exists()

    sent = session.post(
        "/api/send_message",
        payload,
        content_type="application/json",
        HTTP_X_CSRFTOKEN=session.cookies["csrftoken"].value,
    )

    assert sent.status_code == 200, sent.content
    assert sent.json()["success"] is True


def test_bearer_client_needs_no_csrf_token(owner_client, lead):
    owner_client.enforce_csrf_checks = True

    r = owner_client.post("/api/send_message", {"phone_number": "919876543210", "message": "Hi"}, format="json")

    assert r.status_code == 200, r.content


def test_send_message_needs_a_login(lead):
    r = Client().post(
        "/api/send_message",
        json.dumps({"phone_number": "919876543210", "message": "Hi"}),
        content_type="application/json",
    )

    assert r.status_code == 401
    assert not Message.objects.exists()
