"""The contacts, tag and team pages in a real browser (headless Chromium against the
live server): create a tag, put it on a lead and see it in its colour on the contacts
list; an admin adds an agent who then logs in and sees the agent's dashboard."""

import re

import pytest
from playwright.sync_api import expect

from accounts.models import User
from leads.models import Tag
from leads.tests.factories import LeadFactory, MessageFactory
from tests.browser import log_in, new_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_create_a_tag_and_see_it_on_the_contacts_list(owner_page, account):
    lead = LeadFactory(account=account, name="Priya Patel")
    MessageFactory(lead=lead, body="Is the course still open?", is_read=False)
    page = owner_page
    page.goto("/contacts")
    expect(page.get_by_test_id("unread")).to_have_text("1")
    expect(page.get_by_test_id("last-message")).to_contain_text("Is the course still open?")
    page.get_by_role("link", name="Manage tags").click()
    expect(page.get_by_test_id("empty-state")).to_contain_text("No tags yet")

    page.get_by_label("Name").fill("Follow up")
    page.get_by_label("Colour").fill("#00aa11")
    page.get_by_role("button", name="Create tag").click()
    expect(page.get_by_role("status")).to_have_text("Tag “Follow up” created.")
    expect(page.get_by_test_id("lead-count")).to_have_text("0")
    page.get_by_label("Name").fill("follow UP")  # the service's rule, shown on the form
    page.get_by_role("button", name="Create tag").click()
    expect(page.locator(".field-error")).to_have_text("A tag with this name already exists.")
    assert Tag.objects.filter(account=account).count() == 1

    page.goto(f"/leads/{lead.pk}")
    page.get_by_label("Add tags").fill("Follow up")
    page.get_by_label("Add tags").press("Enter")
    page.goto("/contacts")
    chip = page.locator(f'tr[data-contact-id="{lead.pk}"] .tag')
    expect(chip).to_have_text("Follow up")
    colour = chip.evaluate("el => getComputedStyle(el).getPropertyValue('--tag-color').trim()")
    assert colour == "#00aa11"  # applied by app.js, no inline style

    page.goto("/contacts/tags")
    expect(page.get_by_test_id("lead-count")).to_have_text("1")


def test_an_admin_adds_an_agent_who_can_log_in(owner_page, chromium, site, account):
    page = owner_page
    page.goto("/")
    page.get_by_role("link", name="Team").first.click()
    expect(page).to_have_url(re.compile(r"/team$"))
    page.get_by_role("link", name="Add a user").click()
    page.get_by_label("Name").fill("Nina Agent")
    page.get_by_label("Email").fill("nina@example.com")
    page.get_by_label("Role").select_option("agent")
    page.get_by_label("Initial password").fill("123")
    page.get_by_role("button", name="Add user").click()
    expect(page.locator(".field-error").first).to_contain_text("This password is too short.")
    page.get_by_label("Initial password").fill("Sturdy-Pass-917!")
    page.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("status")).to_have_text("Nina Agent can now log in as agent.")
    expect(page.locator("tr", has_text="nina@example.com").get_by_test_id("state")).to_have_text("Active")
    nina = User.objects.get(email="nina@example.com")
    assert (nina.account_id, nina.role) == (account.pk, "agent")

    other = new_page(chromium, site)
    try:
        log_in(other, email="nina@example.com", password="Sturdy-Pass-917!")
        expect(other.get_by_role("link", name="Contacts").first).to_be_visible()
        expect(other.get_by_role("link", name="Team")).to_have_count(0)
        assert other.goto("/team").status == 403
    finally:
        other.context.close()
