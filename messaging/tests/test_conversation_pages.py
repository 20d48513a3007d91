"""A lead's WhatsApp conversation on the dashboard, through Django's test client: the
thread (bubbles, times in the account's time zone, status ticks, failures), the
24-hour window, the reply box (text, templates, opted-out), the htmx fragment that
is polled, and sending through messaging.services.message_send."""

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from leads.tests.factories import LeadFactory, MessageFactory
from messaging.models import Message, Template
from tests.pages import page_text

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]


@pytest.fixture(autouse=True)
def _broker(purged_broker):
    """Sandbox sends queue their status walk: keep the task queue clean around each test."""
    return purged_broker


def bubbles(response) -> list[tuple[str, str, str]]:
    """(direction, status, text) of each bubble in the thread, oldest first."""
    found = re.findall(
        r'<li class="bubble (inbound|outbound)[^"]*" data-message-id="[^"]+" data-status="(\w+)">(.*?)</li>',
        response.content.decode(),
        flags=re.S,
    )
    return [(d, s, re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body))).strip()) for d, s, body in found]


@pytest.fixture
def open_lead(account):
    """A lead who wrote an hour ago: the 24-hour window is open."""
    lead = LeadFactory(account=account, name="Priya Sharma", last_inbound_at=timezone.now() - timedelta(hours=1))
    MessageFactory(lead=lead, direction="inbound", body="Is the 2BHK available?", is_read=False)
    return lead


def test_the_thread_shows_bubbles_in_order_with_ticks_and_times(owner_web, account, owner):
    account.time_zone = "Asia/Kolkata"
    account.save()
    lead = LeadFactory(account=account)
    at = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)  # 09:30 in Kolkata
    MessageFactory(lead=lead, direction="inbound", body="Hello?", created_at=at)
    for minutes, status in enumerate(["queued", "sent", "delivered", "read"], start=1):
        MessageFactory(
            lead=lead,
            direction="outbound",
            status=status,
            body=f"Reply {status}",
            created_at=at + timedelta(minutes=minutes),
        )
    MessageFactory(
        lead=lead,
        direction="outbound",
        status="failed",
        body="Not this one",
        error_code="131026",
        error_title="Message undeliverable",
        sent_by=owner,
        created_at=at + timedelta(minutes=9),
    )
    response = owner_web.get(f"/leads/{lead.pk}")
    assert bubbles(response) == [
        ("inbound", "delivered", "Hello? 09:30"),
        ("outbound", "queued", "Reply queued 09:31 ◷ Queued"),
        ("outbound", "sent", "Reply sent 09:32 ✓ Sent"),
        ("outbound", "delivered", "Reply delivered 09:33 ✓✓ Delivered"),
        ("outbound", "read", "Reply read 09:34 ✓✓ Read"),
        (
            "outbound",
            "failed",
            "Not this one Olivia Owner · 09:39 ! Failed Not delivered: Message undeliverable (131026)",
        ),
    ]
    assert "Sunday 1 March 2026" in page_text(response)


def test_the_thread_shows_template_and_media_messages(owner_web, account):
    lead = LeadFactory(account=account)
    MessageFactory(lead=lead, direction="inbound", type="media", body="Floor plan", media={"type": "image"})
    MessageFactory(
        lead=lead, direction="outbound", type="template", template_name="hello_world", body="Hello from Acme!"
    )
    texts = [text for _, _, text in bubbles(owner_web.get(f"/leads/{lead.pk}"))]
    assert texts[0].startswith("Image Floor plan")
    assert texts[1].startswith("Template · hello_world Hello from Acme!")


def test_message_text_is_escaped(owner_web, account):
    lead = LeadFactory(account=account)
    MessageFactory(lead=lead, direction="inbound", body="<img src=x onerror=alert(1)>")
    body = owner_web.get(f"/leads/{lead.pk}").content.decode()
    assert "<img src=x" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body


def test_only_the_latest_messages_are_shown(owner_web, account, settings):
    lead = LeadFactory(account=account)
    start = timezone.now() - timedelta(days=1)
    MessageFactory.create_batch(3, lead=lead, body="old", created_at=start)
    from messaging import views

    views_size, views.THREAD_SIZE = views.THREAD_SIZE, 2
    try:
        MessageFactory(lead=lead, body="newer", created_at=start + timedelta(minutes=1))
        MessageFactory(lead=lead, body="newest", created_at=start + timedelta(minutes=2))
        response = owner_web.get(f"/leads/{lead.pk}")
    finally:
        views.THREAD_SIZE = views_size
    assert [text.split(" ")[0] for _, _, text in bubbles(response)] == ["newer", "newest"]
    assert "Only the latest 2 messages are shown." in page_text(response)


def test_opening_the_conversation_marks_inbound_messages_read(owner_web, open_lead):
    assert Message.objects.filter(direction="inbound", is_read=False).count() == 1
    owner_web.get(f"/leads/{open_lead.pk}")
    assert not Message.objects.filter(direction="inbound", is_read=False).exists()


# --- The window and the reply box ------------------------------------------------------------------


def test_an_open_window_offers_text_and_templates(owner_web, open_lead):
    response = owner_web.get(f"/leads/{open_lead.pk}")
    body = response.content.decode()
    assert "Reply window open until" in page_text(response)
    assert 'name="message"' in body
    assert re.search(r"<fieldset\s*>\s*<legend class=\"sr-only\">Text reply", body)  # enabled
    # The sandbox's approved templates were loaded on first use.
    assert "hello_world (en_US) — Hello from {{1}}!" in html.unescape(body)


def test_a_closed_window_offers_templates_only(owner_web, account):
    lead = LeadFactory(account=account, last_inbound_at=timezone.now() - timedelta(hours=30))
    response = owner_web.get(f"/leads/{lead.pk}")
    body = response.content.decode()
    text = page_text(response)
    assert "Reply window closed: the contact last wrote" in text
    assert "send a template below" in text
    assert re.search(r"<fieldset disabled>\s*<legend class=\"sr-only\">Text reply", body)
    assert re.search(r'<details class="template-picker" open>', body)


def test_a_lead_who_never_wrote_has_a_closed_window(owner_web, account):
    lead = LeadFactory(account=account)
    assert "the contact has never written" in page_text(owner_web.get(f"/leads/{lead.pk}"))


def test_an_opted_out_lead_cannot_be_messaged_and_the_page_says_why(owner_web, account):
    lead = LeadFactory(
        account=account,
        name="Omar",
        is_opted_out=True,
        opted_out_at=timezone.now(),
        opt_out_reason="Replied STOP",
        last_inbound_at=timezone.now(),
    )
    response = owner_web.get(f"/leads/{lead.pk}")
    body = response.content.decode()
    assert "Omar opted out" in page_text(response)
    assert "(Replied STOP): WhatsApp messages can't be sent to this contact." in page_text(response)
    assert body.count("<fieldset disabled>") == 2  # text and template


# --- Sending ------------------------------------------------------------------------------------------


def test_send_a_text_reply(owner_web, open_lead, owner):
    response = owner_web.post(f"/leads/{open_lead.pk}/reply", {"kind": "text", "message": "  Yes, it is!  "})
    assert response.status_code == 302
    assert response["Location"] == f"/leads/{open_lead.pk}#conversation"
    sent = Message.objects.get(direction="outbound")
    assert (sent.body, sent.status, sent.source, sent.sent_by, sent.provider) == (
        "Yes, it is!",
        "sent",
        "dashboard",
        owner,
        "sandbox",
    )
    page = owner_web.get(response["Location"])
    assert "Message sent." in page_text(page)
    assert bubbles(page)[-1][:2] == ("outbound", "sent")


def test_send_a_reply_with_htmx_answers_the_thread_and_a_fresh_reply_box(owner_web, open_lead):
    response = owner_web.post(
        f"/leads/{open_lead.pk}/reply", {"kind": "text", "message": "On my way"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="conversation"')
    assert bubbles(response)[-1][2].startswith("On my way")
    assert 'id="reply-box"' in body
    assert 'hx-swap-oob="true"' in body
    assert "On my way</textarea>" not in body  # the box is emptied


def test_send_a_template_when_the_window_is_closed(owner_web, account):
    lead = LeadFactory(account=account, last_inbound_at=None)
    response = owner_web.post(
        f"/leads/{lead.pk}/reply",
        {"kind": "template", "template": "appointment_reminder|en_US", "params": "Ravi\n 5 March \n\n"},
    )
    assert response.status_code == 302
    sent = Message.objects.get()
    assert (sent.type, sent.template_name, sent.template_params) == (
        "template",
        "appointment_reminder",
        ["Ravi", "5 March"],
    )
    assert sent.body == "Hi Ravi, this is a reminder of your appointment on 5 March."


def test_text_outside_the_window_is_refused_with_the_reason(owner_web, account):
    lead = LeadFactory(account=account, last_inbound_at=timezone.now() - timedelta(hours=25))
    response = owner_web.post(f"/leads/{lead.pk}/reply", {"kind": "text", "message": "Hello"})
    assert response.status_code == 400
    assert "The 24-hour customer service window is closed" in page_text(response)
    assert not Message.objects.exists()


def test_a_reply_to_an_opted_out_lead_is_refused(owner_web, account):
    lead = LeadFactory(account=account, is_opted_out=True, last_inbound_at=timezone.now())
    for data in ({"kind": "text", "message": "Hello"}, {"kind": "template", "template": "hello_world|en_US"}):
        response = owner_web.post(f"/leads/{lead.pk}/reply", data)
        assert response.status_code == 400
        assert "Cannot send message - contact has opted out" in page_text(response)
    assert not Message.objects.exists()


def test_a_refused_htmx_reply_comes_back_into_the_reply_box(owner_web, account):
    lead = LeadFactory(account=account, last_inbound_at=None)
    response = owner_web.post(f"/leads/{lead.pk}/reply", {"kind": "text", "message": "Hi"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200  # htmx swaps only successful answers
    assert response["HX-Retarget"] == "#reply-box"
    assert response["HX-Reswap"] == "outerHTML"
    assert 'id="reply-box"' in response.content.decode()
    assert "window is closed" in page_text(response)
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"kind": "text", "message": ""}, "This field is required."),
        ({"kind": "text", "message": "   "}, "This field is required."),
        ({"kind": "text", "message": "x" * 4097}, "at most 4096 characters"),
        ({"kind": "text", "message": "<b></b>"}, "Send either a text or a template."),
        ({"kind": "template", "template": ""}, "This field is required."),
        ({"kind": "template", "template": "no_such|en_US"}, "Select a valid choice"),
        ({"kind": "template", "template": "hello_world|en_US", "params": "p" * 2001}, "at most 2000 characters"),
        ({"kind": "nonsense", "message": ""}, "This field is required."),
    ],
)
def test_bad_replies_send_nothing_and_say_why(owner_web, open_lead, data, error):
    response = owner_web.post(f"/leads/{open_lead.pk}/reply", data)
    assert response.status_code == 400
    assert error in page_text(response)
    assert not Message.objects.filter(direction="outbound").exists()


def test_a_template_that_is_not_approved_is_not_offered_nor_sent(owner_web, open_lead, account):
    owner_web.get(f"/leads/{open_lead.pk}")  # loads the sandbox templates
    Template.objects.create(account=account, name="pending_promo", language="en_US", status="PENDING")
    body = owner_web.get(f"/leads/{open_lead.pk}").content.decode()
    assert "pending_promo" not in body
    response = owner_web.post(f"/leads/{open_lead.pk}/reply", {"kind": "template", "template": "pending_promo|en_US"})
    assert response.status_code == 400
    assert not Message.objects.filter(direction="outbound").exists()


def test_a_send_whatsapp_refuses_shows_as_a_failed_bubble(owner_web, open_lead, whatsapp_connection, fake_graph):
    fake_graph.fail_next(code=131026, status=400)
    response = owner_web.post(f"/leads/{open_lead.pk}/reply", {"kind": "text", "message": "Hello"})
    assert response.status_code == 400
    assert "WhatsApp did not accept the message" in page_text(response)
    failed = Message.objects.get(direction="outbound")
    assert failed.status == "failed"
    assert bubbles(response)[-1][1] == "failed"
    assert f"Not delivered: {failed.error_title} (131026)" in bubbles(response)[-1][2]
    assert "undeliverable" in failed.error_title.lower()


# --- The polled fragment --------------------------------------------------------------------------------


def test_the_fragment_shows_new_messages_and_polls_again(owner_web, open_lead):
    response = owner_web.get(f"/leads/{open_lead.pk}/conversation?state=open", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="conversation"')
    assert 'hx-trigger="every 3s"' in body
    assert "<html" not in body
    assert 'id="reply-box"' not in body  # nothing changed for the reply box
    MessageFactory(lead=open_lead, direction="inbound", body="Are you there?")
    assert bubbles(owner_web.get(f"/leads/{open_lead.pk}/conversation?state=open"))[-1][2].startswith("Are you there?")


def test_the_fragment_brings_a_new_reply_box_when_the_window_opens(owner_web, account):
    lead = LeadFactory(account=account, last_inbound_at=None)
    closed = owner_web.get(f"/leads/{lead.pk}/conversation?state=closed")
    assert 'id="reply-box"' not in closed.content.decode()
    lead.last_inbound_at = timezone.now()
    lead.save()
    opened = owner_web.get(f"/leads/{lead.pk}/conversation?state=closed")
    body = opened.content.decode()
    assert 'id="reply-box" class="card reply-box reply-open" aria-label="Reply" hx-swap-oob="true"' in body
    assert "?state=open" in body


def test_the_fragment_disables_the_reply_box_when_the_contact_opts_out(owner_web, open_lead):
    open_lead.is_opted_out = True
    open_lead.save()
    body = owner_web.get(f"/leads/{open_lead.pk}/conversation?state=open").content.decode()
    assert 'class="card reply-box reply-opted_out"' in body
    assert body.count("<fieldset disabled>") == 2


def test_the_fragment_runs_a_constant_number_of_queries(owner_web, open_lead):
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            owner_web.get(f"/leads/{open_lead.pk}/conversation?state=open")
        return len(queries)

    count_queries()
    few = count_queries()
    MessageFactory.create_batch(40, lead=open_lead, direction="outbound", status="delivered")
    assert count_queries() == few


def test_a_poll_after_the_session_ended_sends_the_page_to_the_login(account):
    lead = LeadFactory(account=account)
    response = Client().get(
        f"/leads/{lead.pk}/conversation?state=open",
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL=f"http://testserver/leads/{lead.pk}",
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/login?next=%2Fleads%2F{lead.pk}"
    assert "conversation" not in response.content.decode()


def test_a_poll_with_nothing_unread_writes_nothing(owner_web, open_lead):
    owner_web.get(f"/leads/{open_lead.pk}/conversation?state=open")  # reads the unread message
    with CaptureQueriesContext(connection) as queries:
        owner_web.get(f"/leads/{open_lead.pk}/conversation?state=open")
    writes = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))]
    assert writes == []
