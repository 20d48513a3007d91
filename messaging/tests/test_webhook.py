"""Meta's WhatsApp webhook, end to end through /api/webhooks/whatsapp: the verify
handshake, signatures on the raw body, real-shaped payloads (fixtures/*.json) signed
with the app secret, idempotent and out-of-order deliveries, leads and the 24-hour
window, opt-out words and preferences, coexistence echoes, tenant isolation, CORS,
the rate limit, and crash safety (the sweeper)."""

import copy
import hashlib
import hmac
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection as db_connection
from django.test import Client
from django.utils import timezone
from django_q.models import Schedule

from accounts.tests.factories import AccountFactory
from leads.models import Engagement, Lead
from leads.tests.factories import LeadFactory, MessageFactory
from messaging import tasks, webhooks
from messaging.models import Message, Template, WebhookEvent, WhatsAppConnection
from messaging.services import verify_token_digest, window_open, window_open_q

pytestmark = pytest.mark.django_db

# --- Payloads ---------------------------------------------------------------------------
URL = "/api/webhooks/whatsapp"
APP_SECRET = "test-app-secret"  # the whatsapp_connection fixture's
VERIFY_TOKEN = "test-verify-token"
CUSTOMER = "919876543210"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@cache
def _fixture_text(name: str) -> str:
    return (FIXTURES / f"{name}.json").read_text()


def fixture(name: str) -> dict:
    """A fresh copy of ``fixtures/<name>.json``."""
    return copy.deepcopy(json.loads(_fixture_text(name)))


def value_of(payload: dict) -> dict:
    return payload["entry"][0]["changes"][0]["value"]


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def new_wamid() -> str:
    return f"wamid.TEST{uuid.uuid4().hex.upper()}"


def encode(payload: dict | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def deliver(client, payload: dict | bytes, *, secret: str = APP_SECRET, signature: str | None = None, **extra):
    """POSTs the payload as Meta does: the raw JSON body, signed with the app secret.
    ``signature=""`` sends none; any other string is sent as it is."""
    body = encode(payload)
    if signature is None:
        signature = sign(body, secret)
    if signature:
        extra["HTTP_X_HUB_SIGNATURE_256"] = signature
    return client.post(URL, body, content_type="application/json", **extra)


def for_number(payload: dict, phone_number_id: str) -> dict:
    for entry in payload["entry"]:
        for change in entry["changes"]:
            change["value"].setdefault("metadata", {})["phone_number_id"] = phone_number_id
    return payload


def inbound(
    body: str = "Hi, is the 2BHK still available?",
    *,
    wamid: str | None = None,
    phone: str = CUSTOMER,
    name: str = "Priya Sharma",
    at: float | None = None,
    number: str = "1001",
) -> dict:
    """A text message from a customer (fixtures/inbound_text.json)."""
    payload = fixture("inbound_text")
    value = value_of(payload)
    value["metadata"]["phone_number_id"] = number
    value["contacts"] = [{"profile": {"name": name}, "wa_id": phone}]
    message = value["messages"][0]
    message.update({"from": phone, "id": wamid or new_wamid(), "timestamp": str(int(at or time.time()))})
    message["text"]["body"] = body
    return payload


def statuses(*items: dict, number: str = "1001") -> dict:
    """A ``statuses[]`` delivery (fixtures/status_delivered.json's shape) carrying
    ``items``: dicts with ``id`` and ``status`` and optionally ``timestamp``,
    ``biz_opaque_callback_data``, ``errors``."""
    payload = fixture("status_delivered")
    value = value_of(payload)
    value["metadata"]["phone_number_id"] = number
    template = value["statuses"][0]
    value["statuses"] = []
    for item in items:
        status = {**copy.deepcopy(template), "timestamp": str(int(time.time())), **item}
        status["timestamp"] = str(int(float(status["timestamp"])))
        if status["status"] != "delivered":
            status.pop("conversation", None)
            status.pop("pricing", None)
        value["statuses"].append(status)
    return payload


def status(wamid: str, state: str, at: float | None = None, **extra) -> dict:
    item = {"id": wamid, "status": state, **extra}
    if at is not None:
        item["timestamp"] = str(int(at))
    return item


def failure(code: int = 131026, title: str = "Message undeliverable") -> list[dict]:
    return [{"code": code, "title": title, "message": title, "error_data": {"details": title}}]


# --- Fixtures ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings):
    """The rate limit itself is tested below."""
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "webhook": "100000/15m"}


@pytest.fixture
def meta() -> Client:
    """Meta's servers: no session, no token, CSRF checks on as for any outside caller."""
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def connection(whatsapp_connection):
    return whatsapp_connection


@pytest.fixture
def other_connection(other_account):
    """Another workspace's number, with its own app secret and verify token."""
    return WhatsAppConnection.objects.create(
        account=other_account,
        phone_number_id="2001",
        waba_id="3003",
        access_token="other-access-token",
        app_secret=OTHER_SECRET,
        verify_token_hash=verify_token_digest("other-verify-token"),
    )


OTHER_SECRET = "other-app-secret"


def outbound(account, *, phone: str = "+919876543210", **fields) -> Message:
    lead = Lead.objects.filter(account=account, phone=phone).first() or LeadFactory(account=account, phone=phone)
    defaults = {"direction": Message.Direction.OUTBOUND, "status": Message.Status.SENT, "wamid": new_wamid()}
    return MessageFactory(lead=lead, account=account, **{**defaults, **fields})


def row_counts() -> dict:
    return {model.__name__: model.objects.count() for model in (Message, Lead, Engagement, WebhookEvent, Schedule)}


def assert_error(response, status_code: int, code: str) -> None:
    assert response.status_code == status_code, response.content
    body = response.json()
    assert body["success"] is False
    assert body["error"] == code
    assert body["message"]


def ts(dt: datetime) -> datetime:
    return dt.replace(microsecond=0)


# --- Verify handshake -------------------------------------------------------------------


def verify(client, token: str = VERIFY_TOKEN, mode: str = "subscribe", challenge: str = "1158201444", path=URL):
    return client.get(path, {"hub.mode": mode, "hub.verify_token": token, "hub.challenge": challenge})


def test_verify_handshake_answers_the_challenge_as_plain_text(meta, connection):
    response = verify(meta)

    assert response.status_code == 200
    assert response.content == b"1158201444"
    assert response["Content-Type"].startswith("text/plain")


def test_verify_matches_any_connections_token_with_or_without_slash(meta, connection, other_connection):
    assert verify(meta, token="other-verify-token", path=URL + "/").content == b"1158201444"


@pytest.mark.parametrize(
    ("token", "mode", "challenge"),
    [
        ("wrong-token", "subscribe", "123"),
        ("", "subscribe", "123"),
        ("test-verify-token", "unsubscribe", "123"),
        ("test-verify-token", "subscribe", ""),
    ],
)
def test_verify_refuses_a_wrong_token_or_mode_with_403(meta, connection, token, mode, challenge):
    assert_error(verify(meta, token=token, mode=mode, challenge=challenge), 403, "VERIFY_TOKEN_INVALID")


def test_verify_with_no_connection_at_all_is_403(meta, db):
    assert_error(verify(meta), 403, "VERIFY_TOKEN_INVALID")


# --- Signatures -------------------------------------------------------------------------


def test_a_signed_delivery_is_accepted_stored_and_processed(meta, connection):
    payload = inbound()

    response = deliver(meta, payload)

    assert response.status_code == 200, response.content
    assert response.json() == {"success": True, "processed": True}
    event = WebhookEvent.objects.get()
    assert json.loads(event.payload) == payload
    assert event.payload.encode() == encode(payload)  # the raw body, byte for byte
    assert event.phone_number_ids == ["1001"]
    assert event.processed_at is not None
    assert event.error == ""
    assert Message.objects.count() == 1


@pytest.mark.parametrize(
    "signature",
    [
        "",  # missing
        "sha256=" + "0" * 64,
        "sha1=deadbeef",
        "sha256=",
        "garbage",
        "sha256=zz☃",
    ],
)
def test_a_missing_or_wrong_signature_is_401_and_nothing_is_written(meta, connection, signature):
    before = row_counts()

    response = deliver(meta, inbound(), signature=signature)

    assert_error(response, 401, "SIGNATURE_INVALID")
    assert row_counts() == before


def test_a_signature_made_with_another_secret_is_401(meta, connection):
    before = row_counts()
    assert_error(deliver(meta, inbound(), secret="not-the-app-secret"), 401, "SIGNATURE_INVALID")
    assert row_counts() == before


def test_the_signature_covers_the_raw_bytes_not_the_parsed_json(meta, connection):
    """Same JSON, different bytes (spacing): the signature of the other form fails."""
    payload = inbound()
    compact = json.dumps(payload, separators=(",", ":")).encode()
    spaced = json.dumps(payload, indent=2).encode()

    assert_error(deliver(meta, spaced, signature=sign(compact)), 401, "SIGNATURE_INVALID")
    assert deliver(meta, spaced).status_code == 200


def test_a_number_we_dont_know_is_401(meta, connection):
    before = row_counts()
    assert_error(deliver(meta, inbound(number="999999")), 401, "SIGNATURE_INVALID")
    assert row_counts() == before


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe{}", b"[1, 2]", b'{"entry": 5}', b"[" * 5000])
def test_malformed_json_is_400_and_nothing_is_stored(meta, connection, body):
    before = row_counts()

    response = deliver(meta, body)

    assert_error(response, 400, "INVALID_JSON")
    assert row_counts() == before


def test_malformed_parts_of_a_valid_payload_are_skipped(meta, connection):
    payload = inbound()
    payload["entry"].insert(0, "junk")
    payload["entry"][1]["changes"].insert(0, {"value": ["junk"], "field": "messages"})
    value_of_last = payload["entry"][1]["changes"][1]["value"]
    value_of_last["messages"].insert(0, {"from": "", "id": "x"})
    value_of_last["messages"].append({"type": "text"})

    assert deliver(meta, payload).status_code == 200
    assert Message.objects.count() == 1


def test_no_login_and_no_csrf_token_needed(meta, connection):
    response = deliver(meta, inbound(), HTTP_COOKIE="")
    assert response.status_code == 200


# --- Tenant isolation -------------------------------------------------------------------


def test_a_tenant_cannot_sign_for_another_tenants_number(meta, connection, other_connection):
    """Account B knows its own app secret: a payload naming A's number signed with B's
    secret is refused, and nothing is written anywhere."""
    LeadFactory(account=connection.account, phone="+919876543210")
    before = row_counts()

    response = deliver(meta, inbound("STOP", number="1001"), secret=OTHER_SECRET)

    assert_error(response, 401, "SIGNATURE_INVALID")
    assert row_counts() == before


def test_in_a_mixed_delivery_only_the_signing_connections_changes_apply(meta, connection, other_connection):
    mine = inbound("for account B", number="2001")
    theirs = inbound("for account A", number="1001", phone="919812345678")
    mine["entry"].append(theirs["entry"][0])

    response = deliver(meta, mine, secret=OTHER_SECRET)

    assert response.status_code == 200
    assert list(Message.objects.values_list("account_id", "body")) == [(other_connection.account_id, "for account B")]
    assert WebhookEvent.objects.get().phone_number_ids == ["2001"]


def test_an_event_for_one_connection_never_touches_another_accounts_leads(meta, connection, other_connection):
    a_lead = LeadFactory(account=connection.account, phone="+919876543210")
    b_lead = LeadFactory(account=other_connection.account, phone="+919876543210")
    b_message = outbound(other_connection.account, status=Message.Status.SENT)

    deliver(meta, inbound("STOP", number="1001"))
    deliver(meta, statuses(status(b_message.wamid, "read"), number="1001"))

    a_lead.refresh_from_db()
    b_lead.refresh_from_db()
    b_message.refresh_from_db()
    assert a_lead.is_opted_out is True
    assert b_lead.is_opted_out is False
    assert b_lead.last_inbound_at is None
    assert not b_lead.messages.filter(direction=Message.Direction.INBOUND).exists()
    assert b_message.status == Message.Status.SENT  # A's number can't move B's message
    assert b_message.read_at is None


# --- Inbound messages, leads and the window ---------------------------------------------


def test_a_new_phone_creates_a_whatsapp_lead_named_from_the_profile(meta, connection):
    at = ts(timezone.now() - timedelta(minutes=5))

    deliver(meta, inbound("Hello!", phone="919812345678", name="Rahul <b>Verma</b>", at=at.timestamp()))

    lead = Lead.objects.get()
    assert lead.account == connection.account
    assert lead.phone == "+919812345678"
    assert lead.name == "Rahul Verma"
    assert lead.source == "whatsapp"
    message = Message.objects.get()
    assert message.lead == lead
    assert message.account == connection.account
    assert message.direction == Message.Direction.INBOUND
    assert message.source == Message.Source.WHATSAPP
    assert message.type == Message.Type.TEXT
    assert message.status == Message.Status.DELIVERED
    assert message.is_read is False
    assert message.body == "Hello!"
    assert message.created_at == at
    assert lead.last_inbound_at == at
    assert lead.last_message_at == at


def test_a_known_phone_is_matched_to_its_lead(meta, connection):
    lead = LeadFactory(account=connection.account, phone="+919876543210", name="Priya S.")

    deliver(meta, inbound(phone="919876543210", name="Somebody Else"))

    assert Lead.objects.count() == 1
    lead.refresh_from_db()
    assert lead.name == "Priya S."  # the profile name does not overwrite ours
    assert lead.messages.count() == 1


def test_an_inbound_message_opens_the_24_hour_window(meta, connection):
    lead = LeadFactory(account=connection.account, phone="+919876543210")
    assert window_open(lead) is False

    deliver(meta, inbound())

    lead.refresh_from_db()
    assert window_open(lead) is True


def test_an_old_message_delivered_late_does_not_open_the_window(meta, connection):
    lead = LeadFactory(account=connection.account, phone="+919876543210")

    deliver(meta, inbound(at=(timezone.now() - timedelta(hours=30)).timestamp()))

    lead.refresh_from_db()
    assert window_open(lead) is False


def test_the_window_as_a_filter_agrees_with_window_open_at_its_edges(connection):
    """window_open_q answers in the database what window_open answers per lead (the
    broadcast snapshot reads it for 100,000 leads at once)."""
    now = timezone.now().replace(microsecond=0)
    leads = [
        LeadFactory(account=connection.account, phone=f"+9198765432{n:02d}", last_inbound_at=at)
        for n, at in enumerate(
            [
                None,
                now - timedelta(hours=24),  # exactly 24 hours: closed
                now - timedelta(hours=24) + timedelta(seconds=1),
                now - timedelta(hours=23),
                now - timedelta(hours=25),
                now,
            ]
        )
    ]

    in_sql = set(Lead.objects.filter(window_open_q(now=now)).values_list("pk", flat=True))

    assert in_sql == {lead.pk for lead in leads if window_open(lead, now=now)}
    assert len(in_sql) == 3


def test_the_same_delivery_twice_changes_nothing_the_second_time(meta, connection):
    payload = inbound("STOP")
    assert deliver(meta, payload).status_code == 200
    lead = Lead.objects.get()
    snapshot = (lead.last_inbound_at, lead.last_message_at, lead.opted_out_at, lead.updated_at)

    assert deliver(meta, payload).status_code == 200

    lead.refresh_from_db()
    assert Message.objects.count() == 1
    assert Lead.objects.count() == 1
    assert Engagement.objects.count() == 1
    assert (lead.last_inbound_at, lead.last_message_at, lead.opted_out_at, lead.updated_at) == snapshot
    assert WebhookEvent.objects.filter(processed_at__isnull=False).count() == 2  # both kept for audit


def test_out_of_order_messages_never_move_lead_timestamps_backwards(meta, connection):
    newer = ts(timezone.now() - timedelta(minutes=1))
    older = newer - timedelta(hours=2)

    deliver(meta, inbound("second", at=newer.timestamp()))
    deliver(meta, inbound("first", at=older.timestamp()))

    lead = Lead.objects.get()
    assert lead.last_inbound_at == newer
    assert lead.last_message_at == newer
    assert list(lead.messages.order_by("created_at").values_list("body", flat=True)) == ["first", "second"]


def test_a_future_timestamp_is_clamped_to_now(meta, connection):
    deliver(meta, inbound(at=(timezone.now() + timedelta(days=2)).timestamp()))
    assert Message.objects.get().created_at <= timezone.now()


def test_an_image_is_stored_as_media_with_its_caption(meta, connection):
    payload = fixture("inbound_image")
    value_of(payload)["messages"][0]["timestamp"] = str(int(time.time()))

    deliver(meta, payload)

    message = Message.objects.get()
    assert message.type == Message.Type.MEDIA
    assert message.body == "Floor plan from the brochure"
    assert message.media == {
        "type": "image",
        "id": "1029384756102938",
        "mime_type": "image/jpeg",
        "sha256": "o4tOlORjlRX+d5hk9cYo52JDI8yDG6cQ7MSbhmk5uO4=",
        "caption": "Floor plan from the brochure",
    }
    assert message.wamid == value_of(payload)["messages"][0]["id"]


def test_a_button_reply_is_text_with_the_buttons_title(meta, connection):
    deliver(meta, fixture("inbound_button_reply"))

    message = Message.objects.get()
    assert message.type == Message.Type.TEXT
    assert message.body == "Book a site visit"
    assert message.media == {"type": "interactive", "reply": {"id": "visit-saturday", "title": "Book a site visit"}}


def test_a_location_and_a_reaction_are_media(meta, connection):
    payload = inbound()
    value = value_of(payload)
    base = value["messages"][0]
    value["messages"] = [
        {
            **base,
            "id": new_wamid(),
            "type": "location",
            "location": {"latitude": 19.07, "longitude": 72.87, "name": "Site office"},
        },
        {**base, "id": new_wamid(), "type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "👍"}},
    ]
    for message in value["messages"]:
        message.pop("text")

    deliver(meta, payload)

    location, reaction = Message.objects.order_by("body")
    assert (location.type, location.body, location.media["latitude"]) == (Message.Type.MEDIA, "Site office", 19.07)
    assert (reaction.type, reaction.body, reaction.media["emoji"]) == (Message.Type.MEDIA, "👍", "👍")


def test_nul_characters_are_dropped_before_storing(meta, connection):
    deliver(meta, inbound("hel\u0000lo", name="Pri\u0000ya"))
    assert Message.objects.get().body == "hello"
    assert Lead.objects.get().name == "Priya"


# --- Statuses ---------------------------------------------------------------------------


def test_statuses_move_forward_and_fill_their_timestamps(meta, connection):
    message = outbound(connection.account, status=Message.Status.SENT)
    t0 = ts(timezone.now() - timedelta(minutes=3))

    deliver(meta, statuses(status(message.wamid, "delivered", t0.timestamp())))
    message.refresh_from_db()
    assert (message.status, message.delivered_at, message.sent_at) == (Message.Status.DELIVERED, t0, t0)

    deliver(meta, statuses(status(message.wamid, "read", t0.timestamp() + 60)))
    message.refresh_from_db()
    assert (message.status, message.read_at) == (Message.Status.READ, t0 + timedelta(seconds=60))


def test_read_then_a_late_delivered_stays_read_with_delivered_at_filled(meta, connection):
    message = outbound(connection.account, status=Message.Status.SENT, sent_at=None)
    read_at = ts(timezone.now() - timedelta(minutes=1))

    deliver(meta, statuses(status(message.wamid, "read", read_at.timestamp())))
    deliver(meta, statuses(status(message.wamid, "delivered", read_at.timestamp() - 30)))

    message.refresh_from_db()
    assert message.status == Message.Status.READ
    assert message.read_at == read_at
    assert message.delivered_at is not None
    assert message.sent_at is not None


def test_read_and_delivered_in_one_delivery_out_of_order(meta, connection):
    message = outbound(connection.account, status=Message.Status.SENT)
    t = ts(timezone.now())

    deliver(
        meta,
        statuses(status(message.wamid, "read", t.timestamp()), status(message.wamid, "delivered", t.timestamp() - 5)),
    )

    message.refresh_from_db()
    assert message.status == Message.Status.READ


def test_failed_after_delivered_is_ignored(meta, connection):
    message = outbound(connection.account, status=Message.Status.SENT)

    deliver(meta, statuses(status(message.wamid, "delivered")))
    deliver(meta, statuses(status(message.wamid, "failed", errors=failure())))

    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    assert message.error_code == ""
    assert message.error_title == ""


def test_failed_before_delivery_records_metas_error(meta, connection):
    message = outbound(connection.account, status=Message.Status.SENT)
    payload = fixture("status_failed")
    value_of(payload)["statuses"][0]["id"] = message.wamid

    deliver(meta, payload)

    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.error_code == "131026"
    assert message.error_title == "Message undeliverable"
    assert message.failed_at == datetime.fromtimestamp(1763895780, tz=UTC)

    deliver(meta, statuses(status(message.wamid, "read")))  # a failed message stays failed
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED


def test_the_same_status_twice_changes_nothing(meta, connection):
    message = outbound(connection.account, status=Message.Status.SENT)
    payload = statuses(status(message.wamid, "delivered"))
    deliver(meta, payload)
    message.refresh_from_db()
    first = (message.status, message.delivered_at)

    deliver(meta, statuses(status(message.wamid, "delivered", time.time() + 100)))

    message.refresh_from_db()
    assert (message.status, message.delivered_at) == first


def test_a_status_for_an_unknown_wamid_links_our_message_by_its_callback_data(meta, connection):
    """The send's answer was lost (the worker died after Meta accepted it): Meta's echo
    of biz_opaque_callback_data (our Message id) links the wamid."""
    message = outbound(connection.account, status=Message.Status.QUEUED, wamid=None)
    payload = fixture("status_sent_with_callback_data")
    item = value_of(payload)["statuses"][0]
    item["biz_opaque_callback_data"] = str(message.pk)

    deliver(meta, payload)

    message.refresh_from_db()
    assert message.wamid == item["id"]
    assert message.status == Message.Status.SENT
    assert message.sent_at == datetime.fromtimestamp(int(item["timestamp"]), tz=UTC)


def test_callback_data_naming_another_accounts_message_links_nothing(meta, connection, other_connection):
    theirs = outbound(other_connection.account, status=Message.Status.QUEUED, wamid=None)
    payload = fixture("status_sent_with_callback_data")
    value_of(payload)["statuses"][0]["biz_opaque_callback_data"] = str(theirs.pk)

    deliver(meta, payload)

    theirs.refresh_from_db()
    assert theirs.wamid is None
    assert theirs.status == Message.Status.QUEUED


def test_a_status_for_an_unknown_wamid_without_callback_data_is_ignored(meta, connection):
    assert deliver(meta, statuses(status(new_wamid(), "read"))).status_code == 200
    assert WebhookEvent.objects.get().processed_at is not None


def test_a_marketing_stop_failure_131050_opts_the_lead_out(meta, connection):
    message = outbound(connection.account, status=Message.Status.SENT)

    deliver(meta, statuses(status(message.wamid, "failed", errors=failure(131050, "User has stopped marketing"))))

    message.lead.refresh_from_db()
    assert message.lead.is_opted_out is True
    assert Engagement.objects.filter(lead=message.lead, type=Engagement.Type.WHATSAPP).count() == 1


def test_a_batch_of_statuses_costs_a_constant_number_of_queries(connection, django_assert_max_num_queries):
    """100 statuses of 100 messages cost what one costs (set-based writes)."""
    messages = [outbound(connection.account, status=Message.Status.SENT) for _ in range(100)]
    mixed = [status(m.wamid, ("delivered", "read", "failed")[i % 3], errors=failure()) for i, m in enumerate(messages)]

    def receive(payload: dict) -> None:
        body = encode(payload)
        webhooks.webhook_receive(body=body, signature=sign(body))

    single = statuses(status(outbound(connection.account).wamid, "delivered"))
    # The connection, one UPDATE, the event INSERT (and the savepoint pair of the test transaction).
    with django_assert_max_num_queries(5) as one:
        receive(single)
    with django_assert_max_num_queries(len(one.captured_queries)):
        receive(statuses(*mixed))

    assert Message.objects.filter(status=Message.Status.DELIVERED).count() == 34 + 1
    assert Message.objects.filter(status=Message.Status.READ).count() == 33
    assert Message.objects.filter(status=Message.Status.FAILED).count() == 33


# --- Opt-out and opt-in words -----------------------------------------------------------


@pytest.mark.parametrize("word", ["STOP", "stop", "  Stop  ", "Stop.", "UNSUBSCRIBE", "unsubscribe!"])
def test_stop_words_opt_the_lead_out_and_log_an_engagement(meta, connection, word):
    lead = LeadFactory(account=connection.account, phone="+919876543210")

    deliver(meta, inbound(word))

    lead.refresh_from_db()
    assert lead.is_opted_out is True
    assert lead.opted_out_at is not None
    assert "on WhatsApp" in lead.opt_out_reason
    engagement = Engagement.objects.get(lead=lead)
    assert engagement.type == Engagement.Type.WHATSAPP
    assert "Opted out" in engagement.notes
    assert lead.messages.get().body == word.strip()  # the message itself is kept


@pytest.mark.parametrize("text", ["please stop calling me", "STOP IT", "stopped", "START again", "unstop"])
def test_a_sentence_containing_a_word_is_just_a_message(meta, connection, text):
    lead = LeadFactory(account=connection.account, phone="+919876543210", is_opted_out=False)

    deliver(meta, inbound(text))

    lead.refresh_from_db()
    assert lead.is_opted_out is False
    assert not Engagement.objects.exists()


def test_start_opts_the_lead_back_in_with_an_engagement(meta, connection):
    now = time.time()
    deliver(meta, inbound("STOP", at=now - 120))
    lead = Lead.objects.get()
    assert lead.is_opted_out is True

    deliver(meta, inbound("start", at=now))

    lead.refresh_from_db()
    assert lead.is_opted_out is False
    assert lead.opted_out_at is None
    notes = list(Engagement.objects.filter(lead=lead).order_by("at").values_list("notes", flat=True))
    assert len(notes) == 2
    assert "Opted out" in notes[0]
    assert "Opted back in" in notes[1]


def test_a_late_start_older_than_the_stop_is_ignored(meta, connection):
    now = time.time()
    deliver(meta, inbound("STOP", at=now - 10))

    deliver(meta, inbound("START", at=now - 60))  # sent before the STOP, delivered after it

    lead = Lead.objects.get()
    assert lead.is_opted_out is True
    assert Engagement.objects.count() == 1


def test_stop_then_start_in_one_delivery_ends_opted_in(meta, connection):
    now = time.time()
    payload = inbound("STOP", at=now - 30)
    start = inbound("START", at=now)
    value_of(payload)["messages"].append(value_of(start)["messages"][0])

    deliver(meta, payload)

    assert Lead.objects.get().is_opted_out is False


def test_configured_words_opt_out_and_in(meta, connection, settings):
    settings.OPT_OUT_WORDS = ["Stop All", "ARRET"]
    settings.OPT_IN_WORDS = ["Subscribe"]
    now = time.time()

    deliver(meta, inbound("stop   all", at=now - 100))
    lead = Lead.objects.get()
    assert lead.is_opted_out is True

    deliver(meta, inbound("SUBSCRIBE", at=now))
    lead.refresh_from_db()
    assert lead.is_opted_out is False

    deliver(meta, inbound("arret", at=now + 1))
    lead.refresh_from_db()
    assert lead.is_opted_out is True


def test_configured_words_come_from_the_environment():
    script = "from django.conf import settings; print(settings.OPT_OUT_WORDS, settings.OPT_IN_WORDS)"
    env = {**os.environ, "OPT_OUT_WORDS": "STOPALL, Cancel ,", "OPT_IN_WORDS": "UNSTOP"}
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {script}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=django_settings.BASE_DIR,
    )
    assert result.stdout.strip() == "['STOPALL', 'Cancel'] ['UNSTOP']"


def test_an_opted_out_lead_writing_stop_again_logs_nothing_new(meta, connection):
    lead = LeadFactory(account=connection.account, phone="+919876543210", is_opted_out=True)

    deliver(meta, inbound("STOP"))

    lead.refresh_from_db()
    assert lead.is_opted_out is True
    assert not Engagement.objects.exists()


# --- user_preferences -------------------------------------------------------------------


def preference(value: str, at: float | None = None) -> dict:
    payload = fixture("user_preferences_stop")
    item = value_of(payload)["user_preferences"][0]
    item["value"] = value
    item["detail"] = f"User requested to {value} marketing messages"
    item["timestamp"] = int(at or time.time())
    return payload


def test_user_preferences_stop_and_resume(meta, connection):
    lead = LeadFactory(account=connection.account, phone="+919876543210")
    now = time.time()

    deliver(meta, preference("stop", now - 60))
    lead.refresh_from_db()
    assert lead.is_opted_out is True
    # A resume counts only if newer than the opt-out; here the stop was processed
    # five minutes before the contact resumed.
    Lead.objects.filter(pk=lead.pk).update(opted_out_at=timezone.now() - timedelta(minutes=5))

    deliver(meta, preference("resume", now))
    lead.refresh_from_db()
    assert lead.is_opted_out is False
    assert Engagement.objects.filter(lead=lead).count() == 2


def test_user_preferences_stop_from_an_unknown_phone_keeps_an_opted_out_lead(meta, connection):
    deliver(meta, fixture("user_preferences_stop"))

    lead = Lead.objects.get()
    assert (lead.phone, lead.name, lead.is_opted_out) == ("+919876543210", "Priya Sharma", True)


def test_a_resume_older_than_the_stop_is_ignored(meta, connection):
    now = time.time()
    deliver(meta, preference("stop", now))

    deliver(meta, preference("resume", now - 3600))  # sent before the stop, delivered late

    assert Lead.objects.get().is_opted_out is True


def test_resume_does_not_undo_a_stop_the_contact_typed(meta, connection):
    deliver(meta, inbound("STOP", at=time.time() - 600))

    deliver(meta, preference("resume", time.time() + 60))

    assert Lead.objects.get().is_opted_out is True


def test_a_repeated_stop_preference_logs_once(meta, connection):
    payload = preference("stop")
    deliver(meta, payload)
    deliver(meta, payload)
    assert Engagement.objects.count() == 1


# --- Coexistence echoes -----------------------------------------------------------------


def echo_payload(text: str = "Sure, Saturday 11am works.", to: str = CUSTOMER, number: str = "1001") -> dict:
    payload = fixture("smb_message_echoes")
    value = value_of(payload)
    value["metadata"]["phone_number_id"] = number
    item = value["message_echoes"][0]
    item.update({"to": to, "id": new_wamid(), "timestamp": str(int(time.time()))})
    item["text"]["body"] = text
    return payload


def test_echoes_are_recorded_as_outbound_when_coexistence_records_them(meta, connection):
    connection.coexistence_enabled = True
    connection.record_app_echoes = True
    connection.save()
    lead = LeadFactory(account=connection.account, phone="+919876543210")
    payload = fixture("smb_message_echoes")

    deliver(meta, payload)
    deliver(meta, payload)  # Meta's retry

    message = Message.objects.get()
    assert message.lead == lead
    assert message.direction == Message.Direction.OUTBOUND
    assert message.source == Message.Source.APP_ECHO
    assert message.status == Message.Status.SENT
    assert message.body == "Sure, Saturday 11am works. See you at the site!"
    assert message.sent_at == message.created_at == datetime.fromtimestamp(1763895900, tz=UTC)
    lead.refresh_from_db()
    assert lead.last_outbound_at == message.sent_at
    assert lead.last_inbound_at is None  # an echo does not open the window
    assert window_open(lead) is False


@pytest.mark.parametrize(("coexistence", "record"), [(False, True), (True, False), (False, False)])
def test_echoes_are_ignored_unless_both_settings_are_on(meta, connection, coexistence, record):
    connection.coexistence_enabled = coexistence
    connection.record_app_echoes = record
    connection.save()
    LeadFactory(account=connection.account, phone="+919876543210")

    assert deliver(meta, echo_payload()).status_code == 200

    assert not Message.objects.exists()


def test_an_echo_to_an_unknown_phone_creates_a_lead_only_when_contacts_sync(meta, connection):
    connection.coexistence_enabled = connection.record_app_echoes = True
    connection.sync_app_contacts = False
    connection.save()

    deliver(meta, echo_payload(to="919812345678"))
    assert not Lead.objects.exists()

    connection.sync_app_contacts = True
    connection.save()
    deliver(meta, echo_payload(to="919812345678"))
    lead = Lead.objects.get()
    assert (lead.phone, lead.source) == ("+919812345678", "whatsapp")
    assert lead.messages.get().source == Message.Source.APP_ECHO


def test_an_echo_saying_stop_is_not_an_opt_out(meta, connection):
    connection.coexistence_enabled = connection.record_app_echoes = True
    connection.save()
    lead = LeadFactory(account=connection.account, phone="+919876543210")

    deliver(meta, echo_payload("STOP"))

    lead.refresh_from_db()
    assert lead.is_opted_out is False


# --- Templates --------------------------------------------------------------------------


def test_template_status_updates_name_the_waba_and_apply_to_its_account(meta, connection, other_connection):
    mine = Template.objects.create(account=connection.account, name="site_visit_reminder", meta_id="594425479261596")
    theirs = Template.objects.create(
        account=other_connection.account, name="site_visit_reminder", meta_id="594425479261596"
    )

    assert deliver(meta, fixture("message_template_status_update")).status_code == 200

    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.status == Template.Status.APPROVED
    assert theirs.status == Template.Status.PENDING


# --- CORS and the rate limit ------------------------------------------------------------


def test_any_origin_may_call_the_webhook(meta, connection):
    preflight = meta.options(
        URL,
        HTTP_ORIGIN="https://hooks.example.net",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type,x-hub-signature-256",
    )
    assert preflight.status_code == 200
    assert preflight["Access-Control-Allow-Origin"] in ("*", "https://hooks.example.net")

    response = deliver(meta, inbound(), HTTP_ORIGIN="https://hooks.example.net")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] in ("*", "https://hooks.example.net")


def test_the_webhook_rate_limit_answers_429(meta, connection, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "webhook": "2/15m"}

    assert deliver(meta, inbound()).status_code == 200
    assert verify(meta).status_code == 200
    response = deliver(meta, inbound())

    assert_error(response, 429, "RATE_LIMITED")
    assert int(response["Retry-After"]) >= 1
    assert Message.objects.count() == 1


# --- Crash safety: stored, then processed later, once ----------------------------------------


def test_processing_that_raises_keeps_the_event_for_the_sweeper(meta, connection, monkeypatch):
    real = webhooks._process_work

    def crash(item):
        real(item)
        raise RuntimeError("worker died mid-way")

    monkeypatch.setattr(webhooks, "_process_work", crash)
    response = deliver(meta, inbound("STOP"))

    assert response.status_code == 200  # stored: Meta must not resend it
    assert response.json()["processed"] is False
    event = WebhookEvent.objects.get()
    assert event.processed_at is None
    assert "worker died" in event.error
    assert not Message.objects.exists()  # the half-done work was rolled back
    assert not Lead.objects.exists()
    assert Schedule.objects.filter(
        name=webhooks.SWEEP_SCHEDULE_NAME, func="messaging.tasks.process_pending_webhook_events"
    ).exists()

    monkeypatch.setattr(webhooks, "_process_work", real)
    assert tasks.process_pending_webhook_events(older_than=0) == 1
    assert tasks.process_pending_webhook_events(older_than=0) == 0

    event.refresh_from_db()
    assert event.processed_at is not None
    assert event.error == ""
    assert Message.objects.count() == 1
    assert Lead.objects.get().is_opted_out is True
    assert Engagement.objects.count() == 1


def test_a_stored_event_that_nobody_processed_is_swept_after_a_while(connection, settings):
    """A crash between storing and processing (a worker killed, a queued task lost)."""
    settings.WHATSAPP_WEBHOOK_SWEEP_AFTER = 60
    old = WebhookEvent.objects.create(
        payload=encode(inbound("old")).decode(),
        phone_number_ids=["1001"],
        received_at=timezone.now() - timedelta(minutes=5),
    )
    young = WebhookEvent.objects.create(payload=encode(inbound("young")).decode(), phone_number_ids=["1001"])

    assert tasks.process_pending_webhook_events() == 1

    old.refresh_from_db()
    young.refresh_from_db()
    assert old.processed_at is not None
    assert young.processed_at is None
    assert list(Message.objects.values_list("body", flat=True)) == ["old"]
    # Some remain: the sweeper comes back by itself.
    assert Schedule.objects.filter(name=webhooks.SWEEP_SCHEDULE_NAME).exists()


def test_the_sweeper_leaves_events_beyond_the_retry_window(connection, settings):
    settings.WHATSAPP_WEBHOOK_RETRY_DAYS = 7
    WebhookEvent.objects.create(
        payload=encode(inbound()).decode(), phone_number_ids=["1001"], received_at=timezone.now() - timedelta(days=8)
    )
    assert tasks.process_pending_webhook_events(older_than=0) == 0


def test_a_large_delivery_is_stored_and_processed_by_a_worker_once(
    meta, connection, settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.WHATSAPP_WEBHOOK_INLINE_MAX_ITEMS = 1
    queued = []
    monkeypatch.setattr(webhooks, "_queue_event", queued.append)
    payload = inbound("one")
    value_of(payload)["messages"].append(value_of(inbound("two"))["messages"][0])

    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(meta, payload)

    assert response.json() == {"success": True, "processed": False}
    event = WebhookEvent.objects.get()
    assert queued == [event.pk]
    assert event.processed_at is None
    assert not Message.objects.exists()

    assert tasks.process_webhook_event(event.pk) is True
    assert tasks.process_webhook_event(event.pk) is False  # delivered twice by the broker: harmless
    assert sorted(Message.objects.values_list("body", flat=True)) == ["one", "two"]


def test_a_swept_event_for_a_disconnected_number_is_marked_processed(connection):
    event = WebhookEvent.objects.create(
        payload=encode(inbound()).decode(), phone_number_ids=["1001"], received_at=timezone.now() - timedelta(hours=1)
    )
    connection.delete()

    assert tasks.process_pending_webhook_events(older_than=0) == 1
    event.refresh_from_db()
    assert event.processed_at is not None
    assert not Message.objects.exists()


# --- Concurrency: Meta delivers copies and related events at the same time -------------------


def _run_at_once(count: int, work) -> list:
    """Runs ``work(i)`` in ``count`` threads released together; answers the results."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list = []

    def run(i):
        try:
            barrier.wait(timeout=10)
            results[i] = work(i)
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    if errors:
        raise errors[0]
    return results


def _connection_for_transactional_test() -> WhatsAppConnection:
    return WhatsAppConnection.objects.create(
        account=AccountFactory(),
        phone_number_id="1001",
        waba_id="2002",
        access_token="token",
        app_secret=APP_SECRET,
        verify_token_hash=verify_token_digest(VERIFY_TOKEN),
    )


@pytest.mark.django_db(transaction=True)
def test_simultaneous_copies_of_one_delivery_record_it_once(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "webhook": "100000/15m"}
    _connection_for_transactional_test()
    payload = inbound("STOP", phone="919812345678", name="New Person")

    answers = _run_at_once(4, lambda i: deliver(Client(), payload).status_code)

    assert answers == [200] * 4
    assert Lead.objects.count() == 1
    assert Message.objects.count() == 1
    assert Engagement.objects.count() == 1
    assert Lead.objects.get().is_opted_out is True
    assert WebhookEvent.objects.filter(processed_at__isnull=False).count() == 4


@pytest.mark.django_db(transaction=True)
def test_simultaneous_status_batches_for_the_same_messages_end_read(settings):
    """sent, delivered and read batches for the same 50 messages, at once: every
    message ends read, no delivery is left unprocessed (no deadlock lost)."""
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "webhook": "100000/15m"}
    connection = _connection_for_transactional_test()
    lead = LeadFactory(account=connection.account)
    wamids = [new_wamid() for _ in range(50)]
    Message.objects.bulk_create(
        [Message(account=connection.account, lead=lead, direction="outbound", status="queued", wamid=w) for w in wamids]
    )
    batches = [
        statuses(*[status(w, state) for w in rng_order(wamids, seed)])
        for seed, state in enumerate(["sent", "delivered", "read", "delivered", "sent", "read"])
    ]

    answers = _run_at_once(len(batches), lambda i: deliver(Client(), batches[i]).json())

    assert all(answer == {"success": True, "processed": True} for answer in answers), answers
    assert Message.objects.filter(status="read", sent_at__isnull=False, delivered_at__isnull=False).count() == 50


def rng_order(items: list, seed: int) -> list:
    """The same items in a different order per batch (rows locked in different orders)."""
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    return shuffled
