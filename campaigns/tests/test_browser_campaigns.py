"""The drip and scheduled-message pages in a real browser (headless Chromium against
the live server): creating a drip with two steps through a validation error and
finding it listed; scheduling a message in the account's time zone and cancelling it."""

import re
import zoneinfo
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from campaigns.models import Drip, ScheduledMessage

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_create_a_drip_with_two_steps_through_a_validation_error(owner_page, account):
    page = owner_page
    page.goto("/drips")
    expect(page.get_by_test_id("empty-state")).to_contain_text("No drips yet")
    page.get_by_role("link", name="Create your first drip").click()
    expect(page).to_have_url(re.compile(r"/drips/new$"))

    # The first try forgets the name: the errors are shown, the step's text is kept.
    page.locator("#id_steps-0-delay_amount").fill("0")
    page.locator("#id_steps-0-delay_unit").select_option("minutes")
    page.locator("#id_steps-0-text").fill("Hi {{name}}, thanks for your interest!")
    page.get_by_role("button", name="Create drip").click()
    expect(page.get_by_role("alert").first).to_contain_text("Please correct the errors below.")
    expect(page.locator(".field.has-error")).to_contain_text("This field is required.")
    expect(page.locator("#id_steps-0-text")).to_have_value("Hi {{name}}, thanks for your interest!")
    assert Drip.objects.count() == 0

    page.get_by_label("Name").fill("Welcome series")
    page.locator("#id_steps-1-delay_amount").fill("2")
    page.locator("#id_steps-1-delay_unit").select_option("days")
    page.locator("#id_steps-1-text").fill("Any questions? Just reply here.")
    page.get_by_role("button", name="Create drip").click()

    expect(page.locator(".messages")).to_contain_text("Drip “Welcome series” created.")
    steps = page.get_by_test_id("drip-step")
    expect(steps).to_have_count(2)
    expect(steps.nth(0)).to_contain_text("After 0 minutes: Hi {{name}}, thanks for your interest!")
    expect(steps.nth(1)).to_contain_text("After 2 days: Any questions? Just reply here.")

    page.get_by_role("navigation", name="Breadcrumbs").get_by_role("link", name="Drips").click()
    row = page.locator("tr", has_text="Welcome series")
    expect(row).to_be_visible()
    expect(row.get_by_test_id("steps-count")).to_have_text("2")
    assert list(Drip.objects.values_list("name", flat=True)) == ["Welcome series"]


def test_schedule_a_message_and_cancel_it(owner_page, account):
    account.time_zone = "Asia/Kolkata"
    account.save(update_fields=["time_zone"])
    zone = zoneinfo.ZoneInfo("Asia/Kolkata")
    when = (timezone.now() + timedelta(days=2)).astimezone(zone).replace(hour=10, minute=15, second=0, microsecond=0)
    page = owner_page
    page.goto("/scheduled")
    expect(page.get_by_test_id("empty-state")).to_contain_text("No pending scheduled messages")
    page.get_by_role("link", name="Schedule a message").first.click()

    page.get_by_label("Message").fill("Your check-up is on Friday.")
    page.get_by_label("Recipients").fill("+91 98765 43210, +919812345678")
    page.get_by_label("Send at").fill(when.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Repeat").select_option("weekly")
    page.get_by_role("button", name="Schedule").click()

    expect(page.locator(".messages")).to_contain_text("Message scheduled.")
    expect(page.get_by_test_id("scheduled-status")).to_have_text("Pending")
    expect(page.locator("h1")).to_contain_text(when.strftime("%H:%M"))
    scheduled = ScheduledMessage.objects.get()
    assert scheduled.scheduled_time == when  # 10:15 in Kolkata
    assert len(scheduled.recipients) == 2

    page.get_by_role("link", name="Cancel…").click()
    expect(page.get_by_role("alertdialog")).to_contain_text("Cancel this scheduled message?")
    page.get_by_role("button", name="Cancel message").click()
    expect(page.locator(".messages")).to_contain_text("Cancelled: nothing will be sent.")
    expect(page.get_by_test_id("scheduled-status")).to_have_text("Cancelled")
    scheduled.refresh_from_db()
    assert scheduled.status == ScheduledMessage.Status.CANCELLED

    page.get_by_role("navigation", name="Breadcrumbs").get_by_role("link", name="Scheduled messages").click()
    expect(page.get_by_test_id("empty-state")).to_be_visible()
    page.get_by_role("navigation", name="Status").get_by_role("link", name="Cancelled").click()
    expect(page.locator(f'tr[data-scheduled-id="{scheduled.pk}"]')).to_contain_text("Weekly")
