"""The dashboard's shell in a real browser (headless Chromium): logging in through
the form, the layout around every page (account, user, role, sandbox badge), the
keyboard's skip link, and the navigation on a phone-sized screen."""

import re

import pytest
from playwright.sync_api import expect

from leads.tests.factories import LeadFactory
from tests.browser import PHONE, log_in, new_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_log_in_and_see_the_shell_with_the_sandbox_badge(anonymous_page, owner, password):
    page = anonymous_page
    page.goto("/leads")
    expect(page).to_have_url(re.compile(r"/login\?next=/leads$"))
    page.get_by_label("Email").fill(owner.email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/leads$"))
    header = page.locator("header.appbar")
    expect(header.get_by_text("Acme", exact=True)).to_be_visible()
    expect(header.get_by_text("Olivia Owner")).to_be_visible()
    expect(header.get_by_test_id("user-role")).to_have_text("Admin")
    expect(header.get_by_test_id("sandbox-badge")).to_be_visible()
    expect(header.get_by_test_id("sandbox-badge")).to_have_text("Sandbox")
    # htmx is loaded from this site, and the CSP blocked nothing.
    assert page.evaluate("typeof window.htmx") == "object"
    assert page.console_errors == []


def test_a_wrong_password_keeps_you_on_the_login_form(anonymous_page, owner):
    page = anonymous_page
    page.goto("/login")
    page.get_by_label("Email").fill(owner.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Invalid email or password")
    expect(page).to_have_url(re.compile(r"/login$"))


def test_no_sandbox_badge_once_whatsapp_is_connected(owner_page, whatsapp_connection):
    owner_page.goto("/")
    expect(owner_page.get_by_role("heading", level=1)).to_be_visible()
    expect(owner_page.get_by_test_id("sandbox-badge")).to_have_count(0)


def test_an_agent_sees_their_role(agent_page):
    agent_page.goto("/")
    expect(agent_page.get_by_test_id("user-role")).to_have_text("Agent")
    expect(agent_page.locator("header")).to_contain_text("Aditya Agent")


def test_the_skip_link_is_the_first_stop_for_the_keyboard(owner_page):
    owner_page.goto("/leads")
    owner_page.keyboard.press("Tab")
    skip = owner_page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()
    owner_page.keyboard.press("Enter")
    expect(owner_page.locator("main")).to_be_focused()


def test_log_out(owner_page):
    owner_page.goto("/")
    owner_page.get_by_role("button", name="Log out").click()
    expect(owner_page).to_have_url(re.compile(r"/login$"))
    expect(owner_page.get_by_role("status")).to_contain_text("You have been logged out.")
    owner_page.goto("/leads")
    expect(owner_page).to_have_url(re.compile(r"/login\?next=/leads$"))


def test_the_navigation_works_on_a_phone_sized_screen(chromium, site, owner, account):
    LeadFactory(account=account, name="Phone Test Lead")
    page = new_page(chromium, site, user=owner, viewport=PHONE)
    try:
        page.goto("/")
        menu = page.get_by_role("button", name="Menu")
        expect(menu).to_be_visible()
        expect(menu).to_have_attribute("aria-expanded", "false")
        leads_link = page.get_by_role("navigation", name="Main").get_by_role("link", name="Leads")
        expect(leads_link).to_be_hidden()  # folded away behind the menu button
        expect(page.get_by_test_id("sandbox-badge")).to_be_visible()
        menu.click()
        expect(menu).to_have_attribute("aria-expanded", "true")
        expect(leads_link).to_be_visible()
        leads_link.click()
        expect(page).to_have_url(re.compile(r"/leads$"))
        expect(page.get_by_role("link", name="Phone Test Lead")).to_be_visible()
        # Nothing is wider than the screen: no sideways scrolling on any of these pages.
        for path in ("/", "/leads", "/leads/new"):
            page.goto(path)
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path
        assert page.console_errors == []
    finally:
        page.context.close()


def test_log_in_helper_signs_in_through_the_form(anonymous_page, agent, password):
    log_in(anonymous_page, email=agent.email, password=password)
    expect(anonymous_page.get_by_test_id("user-role")).to_have_text("Agent")
