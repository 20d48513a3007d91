"""A lead's WhatsApp conversation in a real browser (headless Chromium against the
live server): sending a reply and seeing its bubble and ticks, an inbound message
arriving through Meta's webhook without a reload, templates when the window is
closed, and the reply box of an opted-out contact."""

import hashlib
import hmac
import json
import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from leads.tests.factories import LeadFactory, MessageFactory
from messaging import services
from messaging.models import Message
from messaging.webhooks import webhook_receive

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Longer than the page's 3-second poll, with room for a loaded machine.
LIVE_UPDATE_MS = 12_000


@pytest.fixture(autouse=True)
def _broker(purged_broker):
    """Sandbox sends queue their status walk for the worker: keep the queue clean."""
    return purged_broker


def mark_page(page) -> None:
    """A marker that a reload would wipe: its survival proves an update came in place."""
    page.evaluate("window.__notReloaded = true")


def not_reloaded(page) -> bool:
    return page.evaluate("window.__notReloaded === true")


def test_send_a_reply_and_watch_its_ticks(owner_page, account, owner):
    lead = LeadFactory(account=account, name="Priya Sharma", last_inbound_at=timezone.now() - timedelta(minutes=5))
    MessageFactory(lead=lead, direction="inbound", body="Is the 2BHK still available?")
    page = owner_page
    page.goto(f"/leads/{lead.pk}")
    thread = page.locator("#conversation .thread")
    expect(thread.locator(".bubble.inbound")).to_have_text([re.compile("Is the 2BHK still available?")])
    expect(page.get_by_test_id("window-state")).to_contain_text("Reply window open until")
    mark_page(page)

    page.get_by_label("Your message").fill("Yes! Would you like to visit on Saturday?")
    page.get_by_role("button", name="Send", exact=True).click()
    bubble = thread.locator(".bubble.outbound")
    expect(bubble).to_have_count(1)
    expect(bubble).to_contain_text("Yes! Would you like to visit on Saturday?")
    expect(bubble.locator(".tick")).to_have_attribute("title", re.compile("^Sent"))
    expect(page.get_by_label("Your message")).to_have_value("")  # a fresh reply box
    assert not_reloaded(page)
    message = Message.objects.get(direction="outbound")
    assert (message.source, message.sent_by, message.provider) == ("dashboard", owner, "sandbox")

    # What the sandbox's worker (or Meta's webhook) does next: the tick follows, no reload.
    services.message_status_apply(wamid=message.wamid, status="read", at=timezone.now())
    expect(bubble.locator(".tick-read")).to_be_visible(timeout=LIVE_UPDATE_MS)
    expect(bubble).to_have_attribute("data-status", "read")
    assert not_reloaded(page)
    assert page.console_errors == []


def signed_inbound(text: str, *, phone: str, name: str) -> tuple[bytes, str]:
    """A Meta webhook delivery of one inbound text, signed as Meta signs it."""
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "2002",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": "15550101001", "phone_number_id": "1001"},
                            "contacts": [{"profile": {"name": name}, "wa_id": phone}],
                            "messages": [
                                {
                                    "from": phone,
                                    "id": f"wamid.BROWSER{int(time.time() * 1000)}",
                                    "timestamp": str(int(time.time())),
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(b"test-app-secret", body, hashlib.sha256).hexdigest()
    return body, signature


def test_an_inbound_message_appears_without_a_reload(owner_page, account, whatsapp_connection):
    lead = LeadFactory(account=account, name="Priya Sharma", phone="+919876543210", last_inbound_at=None)
    page = owner_page
    page.goto(f"/leads/{lead.pk}")
    expect(page.get_by_test_id("sandbox-badge")).to_have_count(0)  # a real Cloud API number
    expect(page.get_by_test_id("window-state")).to_contain_text("the contact has never written")
    expect(page.get_by_label("Your message")).to_be_disabled()
    mark_page(page)

    body, signature = signed_inbound("Hi, is the 2BHK still available?", phone="919876543210", name="Priya")
    assert webhook_receive(body=body, signature=signature).processed

    inbound = page.locator("#conversation .bubble.inbound")
    expect(inbound).to_contain_text("Hi, is the 2BHK still available?", timeout=LIVE_UPDATE_MS)
    # The message opened the 24-hour window: the reply box now takes free text.
    expect(page.get_by_test_id("window-state")).to_contain_text("Reply window open until")
    expect(page.get_by_label("Your message")).to_be_enabled(timeout=LIVE_UPDATE_MS)
    assert not_reloaded(page)
    assert Message.objects.get(direction="inbound").is_read  # seen by the team on screen


def test_a_closed_window_offers_an_approved_template(owner_page, account):
    lead = LeadFactory(account=account, name="Ravi Kumar", last_inbound_at=timezone.now() - timedelta(days=2))
    page = owner_page
    page.goto(f"/leads/{lead.pk}")
    expect(page.get_by_test_id("window-state")).to_contain_text("Reply window closed")
    expect(page.get_by_test_id("text-closed-reason")).to_be_visible()
    expect(page.get_by_label("Your message")).to_be_disabled()
    page.get_by_label("Template").select_option("hello_world|en_US")
    page.get_by_label("Variables").fill("Acme Realty")
    page.get_by_role("button", name="Send template").click()
    bubble = page.locator("#conversation .bubble.outbound")
    expect(bubble).to_contain_text("Template · hello_world")
    expect(bubble).to_contain_text("Hello from Acme Realty!")
    assert Message.objects.get().template_params == ["Acme Realty"]


def test_the_reply_box_of_an_opted_out_lead_is_disabled_with_the_reason(owner_page, account):
    lead = LeadFactory(
        account=account,
        name="Omar Farooq",
        is_opted_out=True,
        opted_out_at=timezone.now(),
        opt_out_reason="Replied STOP",
        last_inbound_at=timezone.now(),
    )
    page = owner_page
    page.goto(f"/leads/{lead.pk}")
    expect(page.get_by_test_id("reply-disabled-reason")).to_contain_text("Omar Farooq opted out on")
    expect(page.get_by_test_id("reply-disabled-reason")).to_contain_text("(Replied STOP)")
    expect(page.get_by_label("Your message")).to_be_disabled()
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_disabled()
    page.get_by_text("Send a template").click()
    expect(page.get_by_label("Template")).to_be_disabled()
    expect(page.get_by_role("button", name="Send template")).to_be_disabled()
    assert not Message.objects.exists()
