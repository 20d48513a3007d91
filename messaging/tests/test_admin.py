"""The Django admin of WhatsApp connections, templates, webhook events and messages, as
the platform's staff use it: a connection's secrets never reach a page; only the
throughput cap and the coexistence settings change (through the service); templates and
messages are read-only history; "Process again" runs the sweeper's service on the
selected webhook events; the lists run a constant number of queries."""

from datetime import timedelta

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.tests.factories import AccountFactory
from leads.tests.factories import LeadFactory, MessageFactory
from messaging import webhooks
from messaging.models import Message, Template, WebhookEvent, WhatsAppConnection
from messaging.services import verify_token_digest
from messaging.tests.test_webhook import encode, inbound

pytestmark = pytest.mark.django_db

CONNECTIONS = "/admin/messaging/whatsappconnection/"
TEMPLATES = "/admin/messaging/template/"
EVENTS = "/admin/messaging/webhookevent/"
MESSAGES = "/admin/messaging/message/"
VERIFY_TOKEN = "test-verify-token"  # the whatsapp_connection fixture's


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def count_queries(client, path: str) -> int:
    with CaptureQueriesContext(db) as queries:
        assert client.get(path).status_code == 200
    return len(queries)


# --- WhatsApp connections ------------------------------------------------------------------


@pytest.fixture
def secrets(whatsapp_connection) -> list[str]:
    """Every secret of the connection, in clear and as stored (encrypted)."""
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT access_token, app_secret, verify_token_hash FROM messaging_whatsappconnection WHERE id = %s",
            [whatsapp_connection.pk],
        )
        stored = list(cursor.fetchone())
    clear = [whatsapp_connection.access_token, whatsapp_connection.app_secret, VERIFY_TOKEN]
    assert all(len(value) >= 8 for value in stored + clear)
    assert verify_token_digest(VERIFY_TOKEN) in stored
    return clear + stored


def test_the_connection_list_shows_the_number_but_no_secret(admin_client, whatsapp_connection, secrets):
    r = admin_client.get(CONNECTIONS)

    assert r.status_code == 200
    page = r.content.decode()
    for shown in ("Acme", "+1 555-010-1001", "1001", "Connected", ">80<"):
        assert shown in page
    for secret in secrets:
        assert secret not in page
    assert "Numbers are connected from the dashboard" in page


@pytest.mark.parametrize(
    "query", [{"status__exact": "connected"}, {"coexistence_enabled__exact": "0"}, {"q": "Acme"}, {"q": "1001"}]
)
def test_the_connection_list_filters_and_search(admin_client, whatsapp_connection, query):
    assert admin_client.get(CONNECTIONS, query).context["cl"].result_count == 1


def test_the_change_page_never_renders_a_secret(admin_client, whatsapp_connection, secrets):
    r = admin_client.get(f"{CONNECTIONS}{whatsapp_connection.pk}/change/")

    assert r.status_code == 200
    page = r.content.decode()
    for secret in secrets:
        assert secret not in page
    assert set(r.context["adminform"].form.fields) == {
        "throughput_cap",
        "coexistence_enabled",
        "record_app_echoes",
        "sync_app_contacts",
    }
    assert "Stored encrypted and never shown" in page


def test_connections_are_not_added_in_the_admin(admin_client, whatsapp_connection):
    assert admin_client.get(f"{CONNECTIONS}add/").status_code == 403
    assert "Add WhatsApp connection" not in admin_client.get(CONNECTIONS).content.decode()


def change(admin_client, connection, **fields):
    data = {"throughput_cap": "80", "record_app_echoes": "on", **fields}
    return admin_client.post(f"{CONNECTIONS}{connection.pk}/change/", data, follow=True)


def test_the_throughput_cap_can_be_changed_and_the_secrets_stay(admin_client, whatsapp_connection):
    token, app_secret = whatsapp_connection.access_token, whatsapp_connection.app_secret

    r = change(admin_client, whatsapp_connection, throughput_cap="500", phone_number_id="9999")

    assert r.status_code == 200
    saved = WhatsAppConnection.objects.get(pk=whatsapp_connection.pk)
    assert saved.throughput_cap == 500
    assert saved.phone_number_id == "1001"  # read-only
    assert (saved.access_token, saved.app_secret) == (token, app_secret)
    assert saved.verify_token_hash == verify_token_digest(VERIFY_TOKEN)


def test_a_cap_out_of_range_is_refused(admin_client, whatsapp_connection):
    r = change(admin_client, whatsapp_connection, throughput_cap="5000")

    assert r.context["adminform"].form.errors["throughput_cap"]
    whatsapp_connection.refresh_from_db()
    assert whatsapp_connection.throughput_cap == 80


def test_coexistence_goes_through_the_service_which_caps_the_throughput(admin_client, whatsapp_connection):
    r = change(admin_client, whatsapp_connection, throughput_cap="80", coexistence_enabled="on", sync_app_contacts="on")

    assert any("The throughput cap is 20 messages a second" in message for message in shown_messages(r))
    whatsapp_connection.refresh_from_db()
    assert whatsapp_connection.coexistence_enabled is True
    assert whatsapp_connection.sync_app_contacts is True
    assert whatsapp_connection.throughput_cap == 20


def test_deleting_a_connection_disconnects_through_the_service(admin_client, whatsapp_connection, account):
    Template.objects.create(account=account, name="welcome", status="APPROVED")
    Template.objects.create(account=account, name="sandbox_hello", status="APPROVED", is_sandbox=True)

    r = admin_client.post(f"{CONNECTIONS}{whatsapp_connection.pk}/delete/", {"post": "yes"})

    assert r.status_code == 302
    assert not WhatsAppConnection.objects.exists()
    assert list(Template.objects.values_list("name", flat=True)) == ["sandbox_hello"]  # Meta's went with it


def test_the_connection_list_runs_a_constant_number_of_queries(admin_client):
    def connect(count: int) -> None:
        for _ in range(count):
            account = AccountFactory()
            WhatsAppConnection.objects.create(
                account=account,
                phone_number_id=f"{account.pk.int % 10**12}",
                waba_id="2002",
                display_phone_number="+1 555-010-0000",
                access_token="token-" + account.pk.hex,
                app_secret="secret-" + account.pk.hex,
                verify_token_hash=verify_token_digest(account.pk.hex),
            )

    connect(2)
    count_queries(admin_client, CONNECTIONS)  # the session's first request
    few = count_queries(admin_client, CONNECTIONS)
    connect(18)
    assert count_queries(admin_client, CONNECTIONS) == few


# --- Templates -----------------------------------------------------------------------------


@pytest.fixture
def templates(account, other_account):
    return [
        Template.objects.create(account=account, name="welcome_offer", category="MARKETING", status="APPROVED"),
        Template.objects.create(account=account, name="visit_reminder", category="UTILITY", status="PENDING"),
        Template.objects.create(
            account=other_account, name="welcome_offer", language="hi", category="MARKETING", status="REJECTED"
        ),
    ]


@pytest.mark.parametrize(
    ("query", "count"),
    [
        ({}, 3),
        ({"status": "APPROVED"}, 1),
        ({"category": "MARKETING"}, 2),
        ({"language": "hi"}, 1),
        ({"q": "welcome"}, 2),
        ({"q": "reminder"}, 1),
    ],
)
def test_templates_are_listed_filtered_and_searched(admin_client, templates, query, count):
    r = admin_client.get(TEMPLATES, query)

    assert r.status_code == 200
    assert r.context["cl"].result_count == count


def test_templates_are_read_only(admin_client, templates):
    template = templates[0]

    assert admin_client.get(f"{TEMPLATES}add/").status_code == 403
    assert admin_client.get(f"{TEMPLATES}{template.pk}/change/").status_code == 200
    assert admin_client.post(f"{TEMPLATES}{template.pk}/change/", {"status": "REJECTED"}).status_code == 403
    assert admin_client.post(f"{TEMPLATES}{template.pk}/delete/", {"post": "yes"}).status_code == 403
    template.refresh_from_db()
    assert template.status == "APPROVED"


# --- Webhook events ----------------------------------------------------------------------------


@pytest.fixture
def stored_event(whatsapp_connection) -> WebhookEvent:
    """A delivery stored but not processed (a crash, a lost task)."""
    return WebhookEvent.objects.create(
        payload=encode(inbound("Is the 2BHK still available?")).decode(),
        phone_number_ids=["1001"],
        received_at=timezone.now() - timedelta(minutes=5),
        error="OperationalError: deadlock detected",
    )


def process_again(admin_client, events):
    data = {"action": "process_again", "_selected_action": [str(event.pk) for event in events]}
    return admin_client.post(EVENTS, data, follow=True)


def test_events_are_filtered_by_processed(admin_client, stored_event):
    done = WebhookEvent.objects.create(payload="{}", processed_at=timezone.now())

    unprocessed = admin_client.get(EVENTS, {"processed": "no"}).context["cl"].result_list
    processed = admin_client.get(EVENTS, {"processed": "yes"}).context["cl"].result_list

    assert list(unprocessed) == [stored_event]
    assert list(processed) == [done]


def test_an_event_shows_its_payload_pretty_printed(admin_client, stored_event):
    r = admin_client.get(f"{EVENTS}{stored_event.pk}/change/")

    assert r.status_code == 200
    page = r.content.decode()
    assert "<pre>{\n" in page
    assert "Is the 2BHK still available?" in page
    assert "OperationalError: deadlock detected" in page
    assert admin_client.get(f"{EVENTS}add/").status_code == 403


def test_a_payload_that_is_not_json_is_shown_as_it_is(admin_client):
    event = WebhookEvent.objects.create(payload="not <json>")

    page = admin_client.get(f"{EVENTS}{event.pk}/change/").content.decode()

    assert "<pre>not &lt;json&gt;</pre>" in page


def test_process_again_processes_the_selected_events_like_the_sweeper(admin_client, stored_event):
    done = WebhookEvent.objects.create(payload="{}", phone_number_ids=["1001"], processed_at=timezone.now())

    r = process_again(admin_client, [stored_event, done])

    assert r.status_code == 200
    assert "1 webhook event(s) processed." in shown_messages(r)
    assert any("1 event(s) skipped: already processed" in message for message in shown_messages(r))
    stored_event.refresh_from_db()
    assert stored_event.processed_at is not None
    assert stored_event.error == ""
    message = Message.objects.get()
    assert message.body == "Is the 2BHK still available?"
    assert message.direction == Message.Direction.INBOUND


def test_process_again_records_a_new_failure_on_the_event(admin_client, stored_event, monkeypatch):
    def broken(payload, connections):
        raise RuntimeError("still broken")

    monkeypatch.setattr(webhooks, "process_payload", broken)

    r = process_again(admin_client, [stored_event])

    assert any(f"Processing failed again for event(s) {stored_event.pk}" in m for m in shown_messages(r))
    stored_event.refresh_from_db()
    assert stored_event.processed_at is None
    assert stored_event.error == "RuntimeError: still broken"
    assert not Message.objects.exists()


# --- Messages -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {"source__exact": "whatsapp"},
        {"provider__exact": "sandbox"},
        {"direction__exact": "inbound"},
        {"status__exact": "delivered"},
        {"type__exact": "text"},
        {"q": "Message"},
    ],
)
def test_the_message_list_filters_by_source_and_provider(admin_client, account, query):
    MessageFactory(lead=LeadFactory(account=account), source="whatsapp", provider="sandbox")

    r = admin_client.get(MESSAGES, query)

    assert r.status_code == 200
    assert len(r.context["cl"].result_list) == 1


def test_the_source_filter_leaves_out_other_sources(admin_client, account):
    lead = LeadFactory(account=account)
    MessageFactory(lead=lead, source="whatsapp")
    MessageFactory(lead=lead, source="broadcast", direction="outbound", provider="cloud")

    assert [m.source for m in admin_client.get(MESSAGES, {"source__exact": "broadcast"}).context["cl"].result_list] == [
        "broadcast"
    ]
    assert len(admin_client.get(MESSAGES, {"provider__exact": "cloud"}).context["cl"].result_list) == 1


def test_messages_are_read_only_history(admin_client, account):
    message = MessageFactory(lead=LeadFactory(account=account), body="Original")

    assert admin_client.get(f"{MESSAGES}add/").status_code == 403
    assert admin_client.get(f"{MESSAGES}{message.pk}/change/").status_code == 200
    assert admin_client.post(f"{MESSAGES}{message.pk}/change/", {"body": "Rewritten"}).status_code == 403
    assert admin_client.post(f"{MESSAGES}{message.pk}/delete/", {"post": "yes"}).status_code == 403
    message.refresh_from_db()
    assert message.body == "Original"


def test_the_message_list_runs_a_constant_number_of_queries(admin_client, account, other_account):
    MessageFactory.create_batch(2, lead=LeadFactory(account=account))
    count_queries(admin_client, MESSAGES)  # the session's first request
    few = count_queries(admin_client, MESSAGES)
    for _ in range(9):
        MessageFactory(lead=LeadFactory(account=account))
        MessageFactory(lead=LeadFactory(account=other_account))

    assert count_queries(admin_client, MESSAGES) == few
