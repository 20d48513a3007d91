"""Heroshhi's message routes: GET /api/messages (filters, pagination, agent scope,
constant queries), GET /api/messages/<leadId>, POST /api/messages/send and
GET /api/messages/templates — success, failure and tenancy for each."""

import itertools
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.tests.factories import AccountFactory
from leads.models import Lead
from messaging.models import Message, Template

pytestmark = pytest.mark.django_db

MESSAGE_KEYS = {
    "id",
    "leadId",
    "direction",
    "status",
    "type",
    "body",
    "templateName",
    "templateLanguage",
    "templateParams",
    "wamid",
    "errorCode",
    "errorTitle",
    "source",
    "provider",
    "sentBy",
    "isRead",
    "media",
    "createdAt",
    "sentAt",
    "deliveredAt",
    "readAt",
    "failedAt",
}
NOW = timezone.now().replace(microsecond=0)
_numbers = itertools.count(1)


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "100000/15m"}


def make_lead(account, *, window: bool = True, **fields) -> Lead:
    n = next(_numbers)
    return Lead.objects.create(
        account=account,
        name=fields.pop("name", f"Lead {n}"),
        phone=fields.pop("phone", f"+9196{n:08d}"),
        last_inbound_at=NOW - timedelta(hours=1) if window else None,
        **fields,
    )


def add_message(lead: Lead, body: str = "Hello", *, inbound: bool = False, at=None, **fields) -> Message:
    return Message.objects.create(
        account_id=lead.account_id,
        lead=lead,
        direction=Message.Direction.INBOUND if inbound else Message.Direction.OUTBOUND,
        body=body,
        created_at=at or NOW,
        **fields,
    )


@pytest.fixture
def leads(account, agent, owner):
    """Three leads of the account: the agent's, someone else's, and an unassigned one."""
    return {
        "mine": make_lead(account, name="Mine", assigned_to=agent),
        "theirs": make_lead(account, name="Theirs", assigned_to=owner),
        "nobodys": make_lead(account, name="Nobody's"),
    }


# --- GET /api/messages -------------------------------------------------------------------------


def test_list_needs_a_login():
    r = APIClient().get("/api/messages")

    assert r.status_code == 401
    assert r.json()["error"] == "NOT_AUTHENTICATED"


def test_list_shows_every_field_in_camel_case_newest_first(owner_client, leads, owner):
    old = add_message(leads["mine"], "Old", at=NOW - timedelta(hours=2), status=Message.Status.READ)
    new = add_message(
        leads["theirs"],
        "New",
        at=NOW,
        status=Message.Status.FAILED,
        error_code="131026",
        error_title="Message undeliverable",
        sent_by=owner,
    )

    r = owner_client.get("/api/messages")

    assert r.status_code == 200, r.content
    body = r.json()
    assert body["success"] is True
    assert body["pagination"] == {"page": 1, "limit": 20, "total": 2, "pages": 1}
    assert [m["id"] for m in body["data"]] == [str(new.pk), str(old.pk)]
    first = body["data"][0]
    assert set(first) == MESSAGE_KEYS
    assert first["leadId"] == str(leads["theirs"].pk)
    assert first["errorCode"] == "131026"
    assert first["errorTitle"] == "Message undeliverable"
    assert first["sentBy"] == str(owner.pk)
    assert first["provider"] == "sandbox"
    assert first["templateName"] is None
    assert body["data"][1]["isRead"] is True  # outbound and read by the contact


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("direction=inbound", {"in-new"}),
        ("direction=outbound", {"out-old", "out-failed", "template"}),
        ("status=failed", {"out-failed"}),
        ("type=template", {"template"}),
        ("search=REFUND", {"in-new"}),
        (f"createdFrom={(NOW - timedelta(days=1)).date().isoformat()}", {"in-new", "out-failed", "template"}),
        (f"createdTo={(NOW - timedelta(days=3)).date().isoformat()}", {"out-old"}),
    ],
)
def test_list_filters(owner_client, leads, query, expected):
    add_message(leads["mine"], "out-old", at=NOW - timedelta(days=3))
    add_message(leads["mine"], "in-new about a refund", inbound=True, at=NOW)
    add_message(leads["theirs"], "out-failed", status=Message.Status.FAILED, at=NOW - timedelta(minutes=5))
    add_message(leads["nobodys"], "template", type=Message.Type.TEMPLATE, at=NOW - timedelta(minutes=1))

    r = owner_client.get(f"/api/messages?{query}")

    assert r.status_code == 200, r.content
    assert {m["body"].split(" about")[0] for m in r.json()["data"]} == expected


def test_search_finds_text_anywhere_in_the_body_and_uses_the_trigram_index(owner_client, leads, other_account):
    add_message(leads["mine"], "Your REFUND is on its way")
    add_message(leads["theirs"], "no refunds after 30 days", inbound=True)
    add_message(leads["nobodys"], "Price: 100% off_today")
    add_message(leads["nobodys"], "Nothing to see")
    add_message(make_lead(other_account), "refund for another workspace")

    def found(text: str) -> set[str]:
        r = owner_client.get("/api/messages", {"search": text})
        assert r.status_code == 200, r.content
        return {m["body"] for m in r.json()["data"]}

    assert found("refund") == {"Your REFUND is on its way", "no refunds after 30 days"}
    assert found("UND IS O") == {"Your REFUND is on its way"}  # mid-word, any case
    assert found("100% off_") == {"Price: 100% off_today"}  # LIKE's wildcards are plain text
    assert found("0%") == {"Price: 100% off_today"}
    assert found("zzz") == set()

    if connection.vendor == "postgresql":
        # The search's SQL (UPPER(body) LIKE UPPER('%…%')) matches the index expression
        # (messaging/migrations/0004): with sequential scans off, the plan uses it.
        sql, params = Message.objects.filter(body__icontains="refund").query.sql_with_params()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "messaging_message_body_trgm" in plan, plan


def test_list_filters_by_lead(owner_client, leads):
    add_message(leads["mine"], "a")
    add_message(leads["theirs"], "b")

    r = owner_client.get(f"/api/messages?leadId={leads['theirs'].pk}")

    assert [m["body"] for m in r.json()["data"]] == ["b"]


@pytest.mark.parametrize(
    "query", ["direction=sideways", "status=lost", "leadId=not-a-uuid", "createdFrom=yesterday", "page=0", "limit=x"]
)
def test_list_refuses_bad_filters(owner_client, query):
    r = owner_client.get(f"/api/messages?{query}")

    assert r.status_code == 400
    assert r.json()["error"] == "VALIDATION_ERROR"


def test_list_paginates(owner_client, leads):
    for i in range(25):
        add_message(leads["mine"], f"m{i}", at=NOW - timedelta(minutes=i))

    r = owner_client.get("/api/messages?page=2&limit=10")

    body = r.json()
    assert body["pagination"] == {"page": 2, "limit": 10, "total": 25, "pages": 3}
    assert [m["body"] for m in body["data"]] == [f"m{i}" for i in range(10, 20)]


def test_agent_sees_messages_of_their_leads_and_unassigned_ones(agent_client, leads):
    for lead in leads.values():
        add_message(lead, lead.name)

    r = agent_client.get("/api/messages")

    assert sorted(m["body"] for m in r.json()["data"]) == ["Mine", "Nobody's"]
    r = agent_client.get(f"/api/messages?leadId={leads['theirs'].pk}")
    assert r.json()["data"] == []


def test_messages_never_leak_across_accounts(outsider_client, owner_client, leads, outsider):
    add_message(leads["mine"], "ours")
    theirs = make_lead(outsider.account)
    add_message(theirs, "globex")

    assert [m["body"] for m in outsider_client.get("/api/messages").json()["data"]] == ["globex"]
    assert [m["body"] for m in owner_client.get("/api/messages").json()["data"]] == ["ours"]
    r = outsider_client.get(f"/api/messages?leadId={leads['mine'].pk}")
    assert r.json()["data"] == []


@pytest.mark.parametrize("client_name", ["owner_client", "agent_client"])
def test_list_runs_in_constant_queries(request, client_name, leads, django_assert_max_num_queries):
    client = request.getfixturevalue(client_name)
    for lead in leads.values():
        add_message(lead, "one")
    client.get("/api/messages")  # warm up (rate-limit cache rows, …)
    # The rate-limit counter (database cache) takes most of these; the list takes 3.
    with django_assert_max_num_queries(16) as few:
        client.get("/api/messages?limit=200")
    for lead in leads.values():
        for _ in range(30):
            add_message(lead, "more")

    with django_assert_max_num_queries(len(few.captured_queries)):
        r = client.get("/api/messages?limit=200")
    assert len(r.json()["data"]) > 30


# --- GET /api/messages/<leadId> ----------------------------------------------------------------


def test_conversation_of_a_lead_newest_first_or_oldest_first(owner_client, leads):
    lead = leads["mine"]
    for i in range(5):
        add_message(lead, f"m{i}", inbound=i % 2 == 0, at=NOW + timedelta(minutes=i))
    add_message(leads["theirs"], "other lead")

    newest = owner_client.get(f"/api/messages/{lead.pk}?limit=3")
    oldest = owner_client.get(f"/api/messages/{lead.pk}/?order=asc&limit=3")

    assert newest.status_code == 200, newest.content
    assert [m["body"] for m in newest.json()["data"]] == ["m4", "m3", "m2"]
    assert newest.json()["pagination"] == {"page": 1, "limit": 3, "total": 5, "pages": 2}
    assert [m["body"] for m in oldest.json()["data"]] == ["m0", "m1", "m2"]
    assert {m["direction"] for m in newest.json()["data"]} == {"inbound", "outbound"}


def test_conversation_of_another_accounts_lead_is_404(outsider_client, leads):
    add_message(leads["mine"], "secret")

    r = outsider_client.get(f"/api/messages/{leads['mine'].pk}")

    assert r.status_code == 404
    assert r.json() == {"success": False, "message": "Lead not found.", "error": "NOT_FOUND"}


def test_conversation_of_a_lead_the_agent_cant_see_is_404(agent_client, leads):
    assert agent_client.get(f"/api/messages/{leads['theirs'].pk}").status_code == 404
    assert agent_client.get(f"/api/messages/{leads['nobodys'].pk}").status_code == 200


def test_conversation_of_a_missing_lead_is_404(owner_client):
    assert owner_client.get(f"/api/messages/{uuid.uuid4()}").status_code == 404


def test_a_ref_that_is_neither_a_lead_id_nor_a_phone_is_404(owner_client):
    r = owner_client.get("/api/messages/hello")

    assert r.status_code == 404
    assert r.json()["error"] == "NOT_FOUND"


def test_conversation_refuses_an_unknown_order(owner_client, leads):
    r = owner_client.get(f"/api/messages/{leads['mine'].pk}?order=sideways")

    assert r.status_code == 400
    assert r.json()["error"] == "VALIDATION_ERROR"


# --- POST /api/messages/send -------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/messages/send", "/api/messages/send/"])
def test_send_text_inside_the_window(owner_client, owner, leads, url):
    lead = leads["mine"]

    r = owner_client.post(url, {"leadId": str(lead.pk), "message": "Your quote is ready"}, format="json")

    assert r.status_code == 201, r.content
    body = r.json()
    assert body["success"] is True
    data = body["data"]
    assert set(data) == MESSAGE_KEYS
    assert data["leadId"] == str(lead.pk)
    assert data["direction"] == "outbound"
    assert data["status"] == "sent"
    assert data["type"] == "text"
    assert data["body"] == "Your quote is ready"
    assert data["provider"] == "sandbox"
    assert data["wamid"].startswith("wamid.sandbox.")
    assert data["source"] == "api"
    assert data["sentBy"] == str(owner.pk)
    assert Message.objects.get().pk == uuid.UUID(data["id"])


def test_send_text_outside_the_window_is_window_closed(owner_client, account):
    lead = make_lead(account, window=False)

    r = owner_client.post("/api/messages/send", {"leadId": str(lead.pk), "message": "Hi"}, format="json")

    assert r.status_code == 400
    assert r.json()["error"] == "WINDOW_CLOSED"
    assert not Message.objects.exists()


def test_send_template_outside_the_window(owner_client, account):
    lead = make_lead(account, window=False)

    r = owner_client.post(
        "/api/messages/send",
        {"leadId": str(lead.pk), "template": {"name": "appointment_reminder", "params": ["Asha", "Friday"]}},
        format="json",
    )

    assert r.status_code == 201, r.content
    data = r.json()["data"]
    assert data["type"] == "template"
    assert data["templateName"] == "appointment_reminder"
    assert data["templateLanguage"] == "en_US"
    assert data["templateParams"] == ["Asha", "Friday"]
    assert data["body"] == "Hi Asha, this is a reminder of your appointment on Friday."


def test_send_an_unapproved_template_is_template_not_approved(owner_client, account):
    lead = make_lead(account)
    Template.objects.create(account=account, name="promo", language="en_US", status=Template.Status.PAUSED)

    r = owner_client.post("/api/messages/send", {"leadId": str(lead.pk), "template": {"name": "promo"}}, format="json")

    assert r.status_code == 400
    assert r.json()["error"] == "TEMPLATE_NOT_APPROVED"


def test_send_to_an_opted_out_lead_is_blocked_with_the_exact_body(owner_client, account):
    lead = make_lead(account, is_opted_out=True)

    r = owner_client.post("/api/messages/send", {"leadId": str(lead.pk), "message": "Hi"}, format="json")

    assert r.status_code == 400
    assert r.json() == {
        "success": False,
        "message": "Cannot send message - contact has opted out",
        "error": "OPT_OUT_BLOCKED",
    }


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"message": "Hi"},
        {"leadId": "nope", "message": "Hi"},
        {"leadId": "LEAD"},
        {"leadId": "LEAD", "message": "Hi", "template": {"name": "hello_world"}},
        {"leadId": "LEAD", "message": ""},
        {"leadId": "LEAD", "message": "x" * 4097},
        {"leadId": "LEAD", "template": {"language": "en_US"}},
        {"leadId": "LEAD", "template": {"name": "hello_world", "params": [{"nested": 1}]}},
        {"leadId": "LEAD", "message": ["Hi"]},
    ],
)
def test_send_validates_its_input(owner_client, leads, payload):
    payload = {k: str(leads["mine"].pk) if v == "LEAD" else v for k, v in payload.items()}

    r = owner_client.post("/api/messages/send", payload, format="json")

    assert r.status_code == 400, r.content
    assert r.json()["error"] == "VALIDATION_ERROR"
    assert not Message.objects.exists()


def test_send_to_another_accounts_lead_is_404(outsider_client, leads):
    r = outsider_client.post("/api/messages/send", {"leadId": str(leads["mine"].pk), "message": "Hi"}, format="json")

    assert r.status_code == 404
    assert not Message.objects.exists()


def test_agent_cannot_send_to_a_lead_they_cant_see(agent_client, leads):
    theirs = agent_client.post(
        "/api/messages/send", {"leadId": str(leads["theirs"].pk), "message": "Hi"}, format="json"
    )
    mine = agent_client.post("/api/messages/send", {"leadId": str(leads["mine"].pk), "message": "Hi"}, format="json")

    assert theirs.status_code == 404
    assert mine.status_code == 201
    assert Message.objects.get().lead == leads["mine"]


def test_send_failure_at_meta_is_send_failed(owner_client, leads, whatsapp_connection, fake_graph):
    fake_graph.fail_next(code=131026, status=400)

    r = owner_client.post("/api/messages/send", {"leadId": str(leads["mine"].pk), "message": "Hi"}, format="json")

    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "SEND_FAILED"
    message = Message.objects.get()
    assert body["errors"] == {"messageId": [str(message.pk)]}
    assert message.status == Message.Status.FAILED
    assert message.error_code == "131026"


def test_send_refused_by_meta_for_the_window_is_window_closed(owner_client, leads, whatsapp_connection, fake_graph):
    fake_graph.fail_next(code=131047, status=400)

    r = owner_client.post("/api/messages/send", {"leadId": str(leads["mine"].pk), "message": "Hi"}, format="json")

    assert r.status_code == 400
    assert r.json()["error"] == "WINDOW_CLOSED"


def test_send_through_the_cloud_api(owner_client, leads, whatsapp_connection, fake_graph):
    lead = leads["mine"]

    r = owner_client.post("/api/messages/send", {"leadId": str(lead.pk), "message": "Hi there"}, format="json")

    assert r.status_code == 201, r.content
    data = r.json()["data"]
    assert data["provider"] == "cloud"
    assert data["wamid"].startswith("wamid.FAKE")
    [sent] = fake_graph.sent_messages()
    assert sent["to"] == lead.phone.lstrip("+")
    assert sent["text"] == {"preview_url": False, "body": "Hi there"}


# --- GET /api/messages/templates ---------------------------------------------------------------


def test_templates_without_a_connection_are_the_labelled_sandbox_ones(owner_client):
    r = owner_client.get("/api/messages/templates")

    assert r.status_code == 200, r.content
    body = r.json()
    assert body["success"] is True
    assert body["provider"] == "sandbox"
    assert body["sandbox"] is True
    names = [t["name"] for t in body["data"]]
    assert "hello_world" in names
    hello = next(t for t in body["data"] if t["name"] == "hello_world")
    assert hello["isSandbox"] is True
    assert hello["approved"] is True
    assert hello["status"] == "APPROVED"
    assert hello["body"] == "Hello from {{1}}!"


def test_templates_are_synced_from_meta_and_refreshed(agent_client, account, whatsapp_connection, fake_graph):
    fake_graph.set_templates(
        "2002",
        [
            {"id": "1", "name": "order_update", "language": "en_US", "status": "APPROVED", "category": "UTILITY"},
            {"id": "2", "name": "promo", "language": "en_US", "status": "PENDING", "category": "MARKETING"},
        ],
    )

    first = agent_client.get("/api/messages/templates")

    assert first.status_code == 200, first.content
    assert first.json()["provider"] == "cloud"
    assert first.json()["sandbox"] is False
    assert [(t["name"], t["approved"], t["isSandbox"]) for t in first.json()["data"]] == [
        ("order_update", True, False),
        ("promo", False, False),
    ]
    fake_graph.set_templates(
        "2002", [{"id": "2", "name": "promo", "language": "en_US", "status": "APPROVED", "category": "MARKETING"}]
    )
    assert [t["name"] for t in agent_client.get("/api/messages/templates").json()["data"]] == [
        "order_update",
        "promo",
    ]  # cached

    refreshed = agent_client.get("/api/messages/templates?refresh=1")

    assert [(t["name"], t["approved"]) for t in refreshed.json()["data"]] == [("promo", True)]
    template_requests = [r for r in fake_graph.requests if r.path.endswith("/message_templates")]
    assert len(template_requests) == 2


def test_template_refresh_refused_by_meta_is_an_error(owner_client, whatsapp_connection, fake_graph):
    fake_graph.state.access_token = "rotated"

    r = owner_client.get("/api/messages/templates?refresh=1")

    assert r.status_code == 400
    assert r.json()["error"] == "WHATSAPP_ERROR"


def test_templates_are_per_account(outsider_client, account):
    Template.objects.create(account=account, name="acme_only", status=Template.Status.APPROVED, is_sandbox=False)

    names = [t["name"] for t in outsider_client.get("/api/messages/templates").json()["data"]]

    assert "acme_only" not in names


def test_other_account_templates_cannot_be_sent(owner_client, account):
    other = AccountFactory()
    Template.objects.create(account=other, name="globex_only", status=Template.Status.APPROVED)
    lead = make_lead(account)

    r = owner_client.post(
        "/api/messages/send", {"leadId": str(lead.pk), "template": {"name": "globex_only"}}, format="json"
    )

    assert r.status_code == 400
    assert r.json()["error"] == "TEMPLATE_NOT_APPROVED"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
