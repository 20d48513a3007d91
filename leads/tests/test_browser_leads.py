"""The leads pages in a real browser (headless Chromium against the live server):
filtering the list, bulk-assigning with checkboxes, creating a lead through a
validation error, and an agent kept out of a colleague's lead."""

import re

import pytest
from playwright.sync_api import expect

from accounts.models import User
from accounts.tests.factories import UserFactory
from leads.models import Lead
from leads.tests.factories import LeadFactory, TagFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def row_names(page) -> list[str]:
    return page.locator("table.leads-table a.lead-name").all_inner_texts()


def test_filter_the_leads_list(owner_page, account, agent):
    vip = TagFactory(account=account, name="VIP")
    LeadFactory(account=account, name="Hot Harini", segment="hot", status="qualified", tags=[vip])
    LeadFactory(account=account, name="Warm Wasim", segment="warm", assigned_to=agent)
    LeadFactory(account=account, name="Cold Chitra", segment="cold", email="chitra@corp.example")
    page = owner_page
    page.goto("/leads")
    expect(page.get_by_test_id("result-count")).to_have_text(re.compile("Showing 1\N{EN DASH}3 of 3 leads"))

    page.get_by_label("Segment", exact=True).select_option("warm")
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(r"segment=warm"))
    assert row_names(page) == ["Warm Wasim"]
    expect(page.get_by_label("Segment", exact=True)).to_have_value("warm")  # the form keeps its values

    page.get_by_role("link", name="Clear filters").click()
    expect(page.get_by_test_id("result-count")).to_contain_text("of 3 leads")

    page.get_by_label("Search").fill("chitra@corp")
    page.get_by_label("Search").press("Enter")
    expect(page.get_by_test_id("result-count")).to_contain_text("of 1 lead matching the filters")
    assert row_names(page) == ["Cold Chitra"]

    page.get_by_label("Search").fill("")
    page.get_by_label("Tag", exact=True).select_option(label="VIP")
    page.get_by_role("button", name="Apply filters").click()
    assert row_names(page) == ["Hot Harini"]

    page.get_by_label("Tag", exact=True).select_option("")
    page.get_by_label("Segment", exact=True).select_option("cold")
    page.get_by_label("Status", exact=True).select_option("lost")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_test_id("empty-state")).to_contain_text("No leads match these filters")


def test_bulk_assign_with_checkboxes(owner_page, account, agent):
    leads = [LeadFactory(account=account, name=name) for name in ("Anil", "Bela", "Chandra")]
    page = owner_page
    page.goto("/leads?sort=name")
    page.get_by_label("Select Anil").check()
    page.get_by_label("Select Chandra").check()
    expect(page.locator("[data-selected-count]")).to_have_text("(2 selected)")
    page.locator("#bulk-assignee").select_option(label="Aditya Agent")
    page.get_by_role("button", name="Assign", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("2 leads assigned.")
    expect(page).to_have_url(re.compile(r"/leads\?sort=name$"))  # back to the same list
    assignees = dict(zip(row_names(page), page.get_by_test_id("assignee").all_inner_texts(), strict=True))
    assert assignees == {"Anil": "Aditya Agent", "Bela": "Unassigned", "Chandra": "Aditya Agent"}
    assert set(Lead.objects.filter(assigned_to=agent).values_list("pk", flat=True)) == {leads[0].pk, leads[2].pk}


def test_select_all_then_bulk_delete_asks_first(owner_page, account):
    LeadFactory.create_batch(3, account=account)
    page = owner_page
    page.goto("/leads")
    page.get_by_label("Select every lead on this page").check()
    expect(page.locator("[data-selected-count]")).to_have_text("(3 selected)")
    page.get_by_role("button", name="Delete…").click()
    expect(page.get_by_role("heading", name="Delete 3 leads?")).to_be_visible()
    assert Lead.objects.count() == 3
    page.get_by_role("button", name="Delete 3 leads").click()
    expect(page.get_by_role("status")).to_have_text("3 leads deleted.")
    expect(page.get_by_test_id("empty-state")).to_contain_text("No leads yet")
    assert Lead.objects.count() == 0


def test_create_a_lead_after_fixing_a_validation_error(owner_page, account):
    page = owner_page
    page.goto("/leads")
    page.get_by_role("link", name="New lead").click()
    page.get_by_label("Name").fill("Priya Sharma")
    page.get_by_label("Phone").fill("12345")
    page.get_by_label("Email").fill("priya@example.com")
    page.get_by_label("Tags").fill("VIP, Mumbai")
    page.get_by_role("button", name="Create lead").click()
    expect(page.get_by_text("'12345' is not a valid phone number.")).to_be_visible()
    expect(page.get_by_label("Phone")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Name")).to_have_value("Priya Sharma")  # what was typed is kept
    assert not Lead.objects.exists()

    page.get_by_label("Phone").fill("+91 98765 43210")
    page.get_by_role("button", name="Create lead").click()
    expect(page.get_by_role("status")).to_have_text("Lead “Priya Sharma” created.")
    expect(page.get_by_role("heading", name="Priya Sharma", level=1)).to_be_visible()
    lead = Lead.objects.get()
    expect(page).to_have_url(re.compile(rf"/leads/{lead.pk}$"))
    assert (lead.account, lead.phone) == (account, "+919876543210")
    expect(page.locator("#tags .tag")).to_have_text(["Mumbai", "VIP"])


def test_an_agent_cannot_open_a_colleagues_lead(agent_page, account):
    colleague = UserFactory(account=account, name="Chen Colleague", role=User.Role.AGENT)
    theirs = LeadFactory(account=account, name="Colleague's Lead", assigned_to=colleague)
    LeadFactory(account=account, name="Open Lead")
    page = agent_page
    page.goto("/leads")
    assert row_names(page) == ["Open Lead"]
    response = page.goto(f"/leads/{theirs.pk}")
    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    expect(page.get_by_text("Colleague's Lead")).to_have_count(0)
