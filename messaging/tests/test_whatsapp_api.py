"""Heroshhi's WhatsApp routes: status, connect (checked against the fake Graph API,
nothing saved when refused), disconnect, send, send-bulk (opt-outs skipped and
counted, queued for the worker) and coexistence — plus a real django-q2 worker
delivering a bulk send to the fake Graph server."""

import collections
import itertools
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.tests.factories import AccountFactory
from leads.models import Lead
from messaging import tasks
from messaging.models import Message, Template, WhatsAppConnection
from tests.servers import PROJECT_ROOT, server_env

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)
_numbers = itertools.count(1)


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "100000/15m"}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_lead(account, *, window: bool = True, **fields) -> Lead:
    n = next(_numbers)
    return Lead.objects.create(
        account=account,
        name=fields.pop("name", f"Lead {n}"),
        phone=fields.pop("phone", f"+9195{n:08d}"),
        last_inbound_at=NOW - timedelta(hours=1) if window else None,
        **fields,
    )


@pytest.fixture
def queued_tasks(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kw: calls.append((func, *args)))
    return calls


# --- GET /api/whatsapp/status ------------------------------------------------------------------


def test_status_without_a_connection_is_the_labelled_sandbox(agent_client):
    r = agent_client.get("/api/whatsapp/status")

    assert r.status_code == 200, r.content
    data = r.json()["data"]
    assert data["provider"] == "sandbox"
    assert data["sandbox"] is True
    assert data["connected"] is False
    assert data["status"] == "sandbox"
    assert "sandbox" in data["statusDetail"].lower()
    assert data["businessNumber"] == "sandbox"
    assert data["phoneNumberId"] is None
    assert data["coexistence"] is None
    assert data["webhookUrl"].endswith("/api/webhooks/whatsapp")


def test_status_of_a_connection_never_shows_its_secrets(agent_client, whatsapp_connection, fake_graph):
    r = agent_client.get("/api/whatsapp/status/")

    assert r.status_code == 200, r.content
    data = r.json()["data"]
    assert data["provider"] == "cloud"
    assert data["sandbox"] is False
    assert data["connected"] is True
    assert data["status"] == "connected"
    assert data["phoneNumberId"] == "1001"
    assert data["wabaId"] == "2002"
    assert data["displayPhoneNumber"] == "+1 555-010-1001"
    assert data["businessNumber"] == "15550101001"
    assert data["throughputCap"] == 80
    assert data["coexistence"] == {"enabled": False, "recordAppEchoes": True, "syncAppContacts": False}
    text = r.content.decode()
    for secret in (fake_graph.state.access_token, "test-app-secret", "test-verify-token", "accessToken", "appSecret"):
        assert secret not in text


def test_status_shows_token_invalid_after_meta_refuses_the_token(
    owner_client, account, whatsapp_connection, fake_graph
):
    lead = make_lead(account)
    fake_graph.state.access_token = "rotated-by-meta"

    sent = owner_client.post("/api/whatsapp/send", {"leadId": str(lead.pk), "message": "Hi"}, format="json")

    assert sent.status_code == 400
    assert sent.json()["error"] == "SEND_FAILED"
    data = owner_client.get("/api/whatsapp/status").json()["data"]
    assert data["status"] == "token_invalid"
    assert data["connected"] is False
    assert data["statusDetail"]


def test_status_is_per_account(outsider_client, whatsapp_connection):
    assert outsider_client.get("/api/whatsapp/status").json()["data"]["provider"] == "sandbox"


# --- POST /api/whatsapp/connect ----------------------------------------------------------------


def connect_body(fake_graph, **overrides) -> dict:
    return {
        "phoneNumberId": "3003",
        "wabaId": "4004",
        "accessToken": fake_graph.state.access_token,
        "appSecret": "app-secret-xyz",
        "verifyToken": "verify-me-please",
        **overrides,
    }


@pytest.fixture
def meta_number(fake_graph):
    fake_graph.add_phone_number("3003", display="+91 98765 00000", name="Acme Support")
    fake_graph.set_templates("4004", [{"id": "9", "name": "welcome", "language": "en_US", "status": "APPROVED"}])
    return fake_graph


def test_connect_checks_the_credentials_with_meta_and_saves_them_encrypted(owner_client, account, meta_number):
    r = owner_client.post("/api/whatsapp/connect", connect_body(meta_number), format="json")

    assert r.status_code == 200, r.content
    data = r.json()["data"]
    assert data["provider"] == "cloud"
    assert data["status"] == "connected"
    assert data["displayPhoneNumber"] == "+91 98765 00000"
    assert data["verifiedName"] == "Acme Support"
    assert data["qualityRating"] == "GREEN"
    assert data["businessNumber"] == "919876500000"
    assert meta_number.state.access_token not in r.content.decode()
    assert "app-secret-xyz" not in r.content.decode()
    probe = [req for req in meta_number.requests if req.path == "/v21.0/3003"]
    assert probe and probe[0].headers["authorization"] == f"Bearer {meta_number.state.access_token}"
    connection = WhatsAppConnection.objects.get(account=account)
    assert connection.access_token == meta_number.state.access_token
    assert connection.app_secret == "app-secret-xyz"
    with db_connection.cursor() as cursor:
        cursor.execute(
            "SELECT access_token, app_secret FROM messaging_whatsappconnection WHERE id = %s", [connection.pk]
        )
        raw_token, raw_secret = cursor.fetchone()
    assert meta_number.state.access_token not in raw_token
    assert "app-secret-xyz" not in raw_secret
    assert list(Template.objects.filter(account=account).values_list("name", flat=True)) == ["welcome"]


def test_connect_with_a_wrong_token_saves_nothing(owner_client, account, meta_number):
    r = owner_client.post("/api/whatsapp/connect", connect_body(meta_number, accessToken="wrong"), format="json")

    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "VALIDATION_ERROR"
    assert "accessToken" in body["errors"]
    assert not WhatsAppConnection.objects.exists()
    assert owner_client.get("/api/whatsapp/status").json()["data"]["provider"] == "sandbox"


def test_connect_again_replaces_the_credentials(owner_client, account, whatsapp_connection, meta_number):
    r = owner_client.post("/api/whatsapp/connect", connect_body(meta_number, throughputCap=250), format="json")

    assert r.status_code == 200, r.content
    connection = WhatsAppConnection.objects.get(account=account)
    assert connection.phone_number_id == "3003"
    assert connection.throughput_cap == 250


def test_a_number_of_another_workspace_cannot_be_connected(outsider_client, whatsapp_connection, fake_graph):
    r = outsider_client.post(
        "/api/whatsapp/connect", connect_body(fake_graph, phoneNumberId="1001", wabaId="2002"), format="json"
    )

    assert r.status_code == 400
    assert "phoneNumberId" in r.json()["errors"]
    assert WhatsAppConnection.objects.count() == 1


def test_agents_cannot_connect(agent_client, meta_number):
    r = agent_client.post("/api/whatsapp/connect", connect_body(meta_number), format="json")

    assert r.status_code == 403
    assert r.json()["error"] == "PERMISSION_DENIED"
    assert not WhatsAppConnection.objects.exists()
    assert meta_number.requests == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"phoneNumberId": "../1001"},
        {"wabaId": "abc"},
        {"accessToken": ""},
        {"appSecret": None},
        {"verifyToken": "short"},
        {"throughputCap": 0},
        {"throughputCap": 1001},
    ],
)
def test_connect_validates_its_input(owner_client, meta_number, overrides):
    r = owner_client.post("/api/whatsapp/connect", connect_body(meta_number, **overrides), format="json")

    assert r.status_code == 400
    assert r.json()["error"] == "VALIDATION_ERROR"
    assert meta_number.requests == []


# --- DELETE /api/whatsapp/disconnect -----------------------------------------------------------


def test_disconnect_returns_to_the_sandbox(owner_client, account, whatsapp_connection):
    Template.objects.create(account=account, name="meta_one", status=Template.Status.APPROVED)

    r = owner_client.delete("/api/whatsapp/disconnect")

    assert r.status_code == 200, r.content
    assert r.json()["data"]["provider"] == "sandbox"
    assert not WhatsAppConnection.objects.exists()
    assert not Template.objects.filter(account=account, is_sandbox=False).exists()
    again = owner_client.delete("/api/whatsapp/disconnect/")
    assert again.status_code == 200
    assert again.json()["success"] is True


def test_agents_cannot_disconnect(agent_client, whatsapp_connection):
    r = agent_client.delete("/api/whatsapp/disconnect")

    assert r.status_code == 403
    assert WhatsAppConnection.objects.exists()


def test_disconnect_touches_only_the_own_account(outsider_client, whatsapp_connection):
    assert outsider_client.delete("/api/whatsapp/disconnect").status_code == 200
    assert WhatsAppConnection.objects.filter(pk=whatsapp_connection.pk).exists()


# --- POST /api/whatsapp/send -------------------------------------------------------------------


def test_send_by_lead_id(owner_client, account):
    lead = make_lead(account)

    r = owner_client.post("/api/whatsapp/send", {"leadId": str(lead.pk), "message": "Hello"}, format="json")

    assert r.status_code == 201, r.content
    assert r.json()["data"]["leadId"] == str(lead.pk)
    assert r.json()["data"]["status"] == "sent"


@pytest.mark.parametrize("written", ["+919812300001", "919812300001", "9812300001", "+91 98123 00001"])
def test_send_by_the_phone_of_an_existing_lead(owner_client, account, written):
    lead = make_lead(account, phone="+919812300001")

    r = owner_client.post("/api/whatsapp/send", {"phone": written, "message": "Hello"}, format="json")

    assert r.status_code == 201, r.content
    assert r.json()["data"]["leadId"] == str(lead.pk)


def test_send_to_an_unknown_phone_is_404_and_creates_nothing(owner_client):
    r = owner_client.post("/api/whatsapp/send", {"phone": "919812399999", "message": "Hello"}, format="json")

    assert r.status_code == 404
    assert not Lead.objects.exists()


def test_send_to_the_phone_of_another_accounts_lead_is_404(outsider_client, account):
    make_lead(account, phone="+919812300002")

    r = outsider_client.post("/api/whatsapp/send", {"phone": "919812300002", "message": "Hello"}, format="json")

    assert r.status_code == 404
    assert not Message.objects.exists()


def test_agent_send_by_phone_respects_the_scope(agent_client, account, owner):
    make_lead(account, phone="+919812300003", assigned_to=owner)

    r = agent_client.post("/api/whatsapp/send", {"phone": "919812300003", "message": "Hello"}, format="json")

    assert r.status_code == 404


@pytest.mark.parametrize(
    "payload",
    [
        {"message": "Hi"},
        {"leadId": "LEAD", "phone": "919812300004", "message": "Hi"},
        {"phone": "12", "message": "Hi"},
        {"leadId": "LEAD"},
    ],
)
def test_send_validates_its_input(owner_client, account, payload):
    lead = make_lead(account, phone="+919812300004")
    payload = {k: str(lead.pk) if v == "LEAD" else v for k, v in payload.items()}

    r = owner_client.post("/api/whatsapp/send", payload, format="json")

    assert r.status_code == 400
    assert r.json()["error"] == "VALIDATION_ERROR"


def test_send_window_closed(owner_client, account):
    lead = make_lead(account, window=False)

    r = owner_client.post("/api/whatsapp/send", {"leadId": str(lead.pk), "message": "Hi"}, format="json")

    assert r.status_code == 400
    assert r.json()["error"] == "WINDOW_CLOSED"


def test_send_through_the_cloud_api_with_a_template(owner_client, account, whatsapp_connection, fake_graph):
    lead = make_lead(account, window=False, phone="+919812300005")
    Template.objects.create(account=account, name="order_update", language="en_GB", status=Template.Status.APPROVED)

    r = owner_client.post(
        "/api/whatsapp/send",
        {"leadId": str(lead.pk), "template": {"name": "order_update", "language": "en_GB", "params": ["A-17"]}},
        format="json",
    )

    assert r.status_code == 201, r.content
    [sent] = fake_graph.sent_messages()
    assert sent["to"] == "919812300005"
    assert sent["template"] == {
        "name": "order_update",
        "language": {"code": "en_GB"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "A-17"}]}],
    }


def test_send_retries_throughput_errors_and_sends_once(owner_client, account, whatsapp_connection, fake_graph):
    lead = make_lead(account)
    fake_graph.fail_next(code=130429, status=400, times=2)

    r = owner_client.post("/api/whatsapp/send", {"leadId": str(lead.pk), "message": "Hi"}, format="json")

    assert r.status_code == 201, r.content
    assert r.json()["data"]["status"] == "sent"
    assert Message.objects.count() == 1
    assert len(fake_graph.sent_messages()) == 3  # two refusals, one acceptance


def test_send_when_meta_stays_busy_answers_queued(owner_client, account, whatsapp_connection, fake_graph, monkeypatch):
    monkeypatch.setattr("messaging.providers.time.sleep", lambda seconds: None)
    lead = make_lead(account)
    fake_graph.fail_next(code=131056, status=400, times=4)

    r = owner_client.post("/api/whatsapp/send", {"leadId": str(lead.pk), "message": "Hi"}, format="json")

    assert r.status_code == 201, r.content
    assert r.json()["data"]["status"] == "queued"


# --- POST /api/whatsapp/send-bulk --------------------------------------------------------------


def test_bulk_counts_opt_outs_invalid_ids_and_closed_windows(
    owner_client, account, queued_tasks, django_capture_on_commit_callbacks
):
    ok = [make_lead(account) for _ in range(3)]
    opted_out = [make_lead(account, is_opted_out=True) for _ in range(2)]
    closed = make_lead(account, window=False)
    stranger = make_lead(AccountFactory())
    ids = [str(lead.pk) for lead in [*ok, *opted_out, closed, stranger]] + [str(uuid.uuid4()), str(ok[0].pk)]

    with django_capture_on_commit_callbacks(execute=True):
        r = owner_client.post("/api/whatsapp/send-bulk", {"leadIds": ids, "message": "Sale!"}, format="json")

    assert r.status_code == 200, r.content
    assert r.json()["success"] is True
    assert r.json()["data"] == {"requested": 8, "queued": 3, "skipped_opted_out": 2, "invalid": 2, "windowClosed": 1}
    messages = Message.objects.all()
    assert {m.lead_id for m in messages} == {lead.pk for lead in ok}
    assert {(m.status, m.source, m.direction) for m in messages} == {("queued", "bulk", "outbound")}
    assert sorted(queued_tasks) == sorted(("messaging.tasks.deliver_message", str(m.pk)) for m in messages)


def test_bulk_by_filter(owner_client, account):
    hot = [make_lead(account, segment="hot") for _ in range(2)]
    make_lead(account, segment="hot", is_opted_out=True)
    make_lead(account, segment="cold")

    r = owner_client.post(
        "/api/whatsapp/send-bulk",
        {"filter": {"segment": "hot"}, "template": {"name": "hello_world", "params": ["Acme"]}},
        format="json",
    )

    assert r.status_code == 200, r.content
    assert r.json()["data"] == {"requested": 3, "queued": 2, "skipped_opted_out": 1, "invalid": 0, "windowClosed": 0}
    assert {m.lead_id for m in Message.objects.all()} == {lead.pk for lead in hot}


def test_bulk_as_an_agent_counts_leads_they_cant_see_as_invalid(agent_client, account, agent, owner):
    mine = make_lead(account, assigned_to=agent)
    theirs = make_lead(account, assigned_to=owner)

    r = agent_client.post(
        "/api/whatsapp/send-bulk", {"leadIds": [str(mine.pk), str(theirs.pk)], "message": "Hi"}, format="json"
    )

    assert r.json()["data"]["queued"] == 1
    assert r.json()["data"]["invalid"] == 1
    assert not Message.objects.filter(lead=theirs).exists()


def test_bulk_with_an_unapproved_template_queues_nothing(owner_client, account):
    lead = make_lead(account)
    Template.objects.create(account=account, name="promo", status=Template.Status.REJECTED)

    r = owner_client.post(
        "/api/whatsapp/send-bulk", {"leadIds": [str(lead.pk)], "template": {"name": "promo"}}, format="json"
    )

    assert r.status_code == 400
    assert r.json()["error"] == "TEMPLATE_NOT_APPROVED"
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    "payload",
    [
        {"message": "Hi"},
        {"leadIds": [], "message": "Hi"},
        {"leadIds": ["LEAD"]},
        {"leadIds": ["LEAD"], "filter": {"segment": "hot"}, "message": "Hi"},
        {"leadIds": ["nope"], "message": "Hi"},
        {"filter": {"segment": "lukewarm"}, "message": "Hi"},
        {"leadIds": ["LEAD"] * 5001, "message": "Hi"},
    ],
)
def test_bulk_validates_its_input(owner_client, account, payload):
    lead = make_lead(account)
    if "leadIds" in payload:
        payload["leadIds"] = [str(lead.pk) if v == "LEAD" else v for v in payload["leadIds"]]

    r = owner_client.post("/api/whatsapp/send-bulk", payload, format="json")

    assert r.status_code == 400, r.content
    assert r.json()["error"] == "VALIDATION_ERROR"
    assert not Message.objects.exists()


def _bulk_queries(client, leads) -> int:
    with CaptureQueriesContext(db_connection) as queries:
        r = client.post(
            "/api/whatsapp/send-bulk", {"leadIds": [str(lead.pk) for lead in leads], "message": "Hi"}, format="json"
        )
    assert r.status_code == 200, r.content
    return len(queries.captured_queries)


def test_bulk_checks_cost_no_query_per_lead(owner_client, account):
    """Opted-out leads and closed windows are sorted out on the rows loaded in one
    query: skipping 1 or 30 costs the same."""
    _bulk_queries(owner_client, [make_lead(account, is_opted_out=True)])  # warm up the rate-limit counter
    one = _bulk_queries(owner_client, [make_lead(account, is_opted_out=True), make_lead(account, window=False)])
    many = _bulk_queries(
        owner_client,
        [make_lead(account, is_opted_out=True) for _ in range(15)]
        + [make_lead(account, window=False) for _ in range(15)],
    )

    assert many == one
    assert not Message.objects.exists()


def test_bulk_messages_are_delivered_by_the_task(owner_client, account, whatsapp_connection, fake_graph, queued_tasks):
    leads = [make_lead(account) for _ in range(3)]

    with_ids = owner_client.post(
        "/api/whatsapp/send-bulk", {"leadIds": [str(lead.pk) for lead in leads], "message": "Hi"}, format="json"
    )
    assert with_ids.json()["data"]["queued"] == 3
    assert fake_graph.sent_messages() == []  # nothing sent inside the request

    for message in Message.objects.all():
        assert tasks.deliver_message(str(message.pk)) == Message.Status.SENT
        assert tasks.deliver_message(str(message.pk)) == Message.Status.SENT  # a duplicate task sends nothing

    assert sorted(m["to"] for m in fake_graph.sent_messages()) == sorted(lead.phone.lstrip("+") for lead in leads)


# --- /api/whatsapp/coexistence -----------------------------------------------------------------


def test_coexistence_without_a_connection_is_not_connected(owner_client):
    for method in ("get", "put"):
        r = getattr(owner_client, method)("/api/whatsapp/coexistence", {"enabled": True}, format="json")
        assert r.status_code == 400
        assert r.json()["error"] == "WHATSAPP_NOT_CONNECTED"


def test_coexistence_get_and_put(owner_client, agent_client, whatsapp_connection):
    got = agent_client.get("/api/whatsapp/coexistence")

    assert got.status_code == 200, got.content
    assert got.json()["data"] == {"enabled": False, "recordAppEchoes": True, "syncAppContacts": False}
    assert got.json()["throughputCap"] == 80

    put = owner_client.put("/api/whatsapp/coexistence/", {"enabled": True, "syncAppContacts": True}, format="json")

    assert put.status_code == 200, put.content
    assert put.json()["data"] == {"enabled": True, "recordAppEchoes": True, "syncAppContacts": True}
    assert put.json()["throughputCap"] == 20  # Meta's cap for coexistence numbers
    whatsapp_connection.refresh_from_db()
    assert whatsapp_connection.coexistence_enabled is True
    assert whatsapp_connection.throughput_cap == 20

    put = owner_client.put("/api/whatsapp/coexistence", {"recordAppEchoes": False}, format="json")
    assert put.json()["data"] == {"enabled": True, "recordAppEchoes": False, "syncAppContacts": True}


def test_agents_cannot_change_coexistence(agent_client, whatsapp_connection):
    r = agent_client.put("/api/whatsapp/coexistence", {"enabled": True}, format="json")

    assert r.status_code == 403
    whatsapp_connection.refresh_from_db()
    assert whatsapp_connection.coexistence_enabled is False


@pytest.mark.parametrize("payload", [{}, {"enabled": "maybe"}, {"syncAppContacts": None}])
def test_coexistence_put_validates(owner_client, whatsapp_connection, payload):
    r = owner_client.put("/api/whatsapp/coexistence", payload, format="json")

    assert r.status_code == 400
    assert r.json()["error"] == "VALIDATION_ERROR"


def test_coexistence_of_another_account_is_untouched(outsider_client, whatsapp_connection):
    assert outsider_client.put("/api/whatsapp/coexistence", {"enabled": True}, format="json").status_code == 400
    whatsapp_connection.refresh_from_db()
    assert whatsapp_connection.coexistence_enabled is False


# --- A real worker ------------------------------------------------------------------------------


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_qcluster_worker_delivers_a_bulk_send_exactly_once_per_lead(
    owner_client, account, whatsapp_connection, fake_graph, tmp_path
):
    leads = [make_lead(account) for _ in range(20)]
    make_lead(account, is_opted_out=True)

    r = owner_client.post(
        "/api/whatsapp/send-bulk",
        {"filter": {}, "message": "Our new catalogue is out"},
        format="json",
    )
    assert r.status_code == 200, r.content
    assert r.json()["data"]["queued"] == 20
    assert r.json()["data"]["skipped_opted_out"] == 1
    assert fake_graph.sent_messages() == []

    log = tmp_path / "qcluster.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=PROJECT_ROOT,
            env=server_env(WHATSAPP_GRAPH_URL=fake_graph.base_url, Q_WORKERS="2"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 90
            while Message.objects.filter(status=Message.Status.SENT).count() < 20:
                assert worker.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"not all sent in time:\n{log.read_text()}"
                time.sleep(0.25)
            time.sleep(1.5)  # a duplicate delivery, if any, would show up now
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()

    per_phone = collections.Counter(body["to"] for body in fake_graph.sent_messages())
    assert per_phone == {lead.phone.lstrip("+"): 1 for lead in leads}
    assert {body["text"]["body"] for body in fake_graph.sent_messages()} == {"Our new catalogue is out"}
    assert Message.objects.filter(status=Message.Status.SENT, wamid__startswith="wamid.FAKE").count() == 20
