"""The dashboard's shell through Django's test client: the layout every page shares
(navigation, account, user and role, logout, flash messages, the sandbox badge),
the home page's numbers for today, accessibility basics, and assets that come from
this site only (the CSP allows nothing else)."""

import html
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.test import Client
from django.utils import timezone

from accounts.models import User
from accounts.tests.factories import UserFactory
from leads.models import Lead
from leads.tests.factories import LeadFactory, MessageFactory
from tests.pages import logged_in, page_text

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]

TEMPLATES = Path(settings.BASE_DIR) / "templates"


def nav_links(response) -> dict[str, str]:
    nav = re.search(r'<nav id="primary-nav".*?</nav>', response.content.decode(), flags=re.S).group(0)
    return {html.unescape(label): href for href, label in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', nav)}


def test_the_layout_names_the_account_the_user_and_the_role(owner, agent):
    owner_page = page_text(logged_in(owner).get("/leads"))
    assert "Acme" in owner_page
    assert "Olivia Owner Admin" in owner_page
    assert "Log out" in owner_page
    assert "Aditya Agent Agent" in page_text(logged_in(agent).get("/leads"))


def test_the_sandbox_badge_shows_until_whatsapp_is_connected(owner, request):
    body = logged_in(owner).get("/").content.decode()
    assert 'data-testid="sandbox-badge"' in body
    request.getfixturevalue("whatsapp_connection")
    assert 'data-testid="sandbox-badge"' not in logged_in(owner).get("/").content.decode()


def test_the_sandbox_badge_is_per_account(owner, outsider, other_account, request):
    request.getfixturevalue("whatsapp_connection")  # connects the owner's account only
    assert 'data-testid="sandbox-badge"' in logged_in(outsider).get("/").content.decode()


def test_every_navigation_link_opens_a_page(owner, agent):
    for user in (owner, agent):
        client = logged_in(user)
        links = nav_links(client.get("/"))
        assert {"Home", "Leads"} <= set(links)
        for label, href in links.items():
            assert client.get(href).status_code == 200, (user.role, label, href)


def test_the_current_page_is_marked_in_the_navigation(owner):
    body = logged_in(owner).get("/leads").content.decode()
    assert '<a href="/leads" aria-current="page">Leads</a>' in body
    assert '<a href="/" aria-current="page">' not in body


def test_admin_only_pages_are_not_offered_to_agents(owner, agent, monkeypatch):
    from heroshhi import context_processors

    navigation = (*context_processors.NAVIGATION, ("Team", "leads:create", True))
    monkeypatch.setattr(context_processors, "NAVIGATION", navigation)
    assert "Team" in nav_links(logged_in(owner).get("/"))
    assert "Team" not in nav_links(logged_in(agent).get("/"))


def test_logout_is_a_post_form_with_a_csrf_token(owner):
    body = logged_in(owner).get("/").content.decode()
    form = re.search(r'<form method="post" action="/logout".*?</form>', body, flags=re.S).group(0)
    assert 'name="csrfmiddlewaretoken"' in form


def test_flash_messages_show_once(owner):
    client = logged_in(owner)
    client.post("/leads/new", {"name": "Flash Test", "phone": "+919876543210", "status": "pending"})
    assert "Lead “Flash Test” created." in page_text(client.get("/leads"))
    assert "created." not in page_text(client.get("/leads"))


# --- Home: today at a glance ---------------------------------------------------------------


def test_home_counts_today_for_the_account(owner, account, other_account, agent):
    account.time_zone = "Asia/Kolkata"
    account.save()
    now = timezone.now()
    today_leads = LeadFactory.create_batch(2, account=account)
    old = LeadFactory(account=account)
    Lead.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=3))
    LeadFactory(account=other_account)  # never counted
    MessageFactory(lead=today_leads[0], direction="inbound", is_read=False)
    MessageFactory(lead=today_leads[0], direction="inbound", is_read=False)
    MessageFactory(lead=old, direction="inbound", is_read=False)
    MessageFactory(lead=today_leads[1], direction="inbound", is_read=True)
    MessageFactory.create_batch(3, lead=old, direction="outbound", status="sent")
    MessageFactory(lead=old, direction="outbound", status="sent", created_at=now - timedelta(days=2))
    body = logged_in(owner).get("/").content.decode()
    assert re.search(r'data-testid="new-leads-today">2<', body)
    assert re.search(r'data-testid="unread-conversations">2<', body)  # two leads wait, one twice
    assert re.search(r'data-testid="messages-sent-today">3<', body)
    assert str(account.pk) in body  # the webhook's userId, for admins


def test_home_counts_only_what_an_agent_may_see(agent, account):
    colleague = UserFactory(account=account, role=User.Role.AGENT)
    mine = LeadFactory(account=account, assigned_to=agent)
    theirs = LeadFactory(account=account, assigned_to=colleague)
    MessageFactory(lead=mine, direction="inbound", is_read=False)
    MessageFactory(lead=theirs, direction="inbound", is_read=False, body="Hidden from the agent")
    response = logged_in(agent).get("/")
    body = response.content.decode()
    assert re.search(r'data-testid="new-leads-today">1<', body)
    assert re.search(r'data-testid="unread-conversations">1<', body)
    assert "Hidden from the agent" not in body
    assert str(account.pk) not in body  # the webhook id is for admins


def test_home_lists_the_conversations_waiting_for_a_reply(owner, account):
    waiting = LeadFactory(account=account, name="Waiting Wanda", last_message_at=timezone.now())
    answered = LeadFactory(account=account, name="Answered Arun")
    MessageFactory(lead=waiting, direction="inbound", is_read=False, body="Any update?")
    MessageFactory(lead=answered, direction="inbound", is_read=True)
    text = page_text(logged_in(owner).get("/"))
    assert "Waiting Wanda 1 unread Any update?" in text
    assert "Answered Arun" not in text


def test_home_of_an_empty_workspace_says_what_to_do(owner):
    text = page_text(logged_in(owner).get("/"))
    assert "No leads yet. Add your first lead" in text
    assert "Nobody is waiting for an answer." in text


def test_home_runs_a_constant_number_of_queries(owner, account, django_assert_max_num_queries):
    client = logged_in(owner)
    client.get("/")
    leads = LeadFactory.create_batch(10, account=account)
    for lead in leads:
        MessageFactory.create_batch(2, lead=lead, direction="inbound", is_read=False)
    with django_assert_max_num_queries(16):
        assert client.get("/").status_code == 200


# --- Accessibility and assets ------------------------------------------------------------------


def test_pages_have_a_language_a_viewport_and_a_skip_link(owner, account):
    lead = LeadFactory(account=account)
    client = logged_in(owner)
    for path in ("/", "/leads", "/leads/new", f"/leads/{lead.pk}", f"/leads/{lead.pk}/edit", "/login"):
        body = (client if path != "/login" else Client()).get(path).content.decode()
        assert '<html lang="en">' in body, path
        assert 'name="viewport"' in body, path
        assert '<a class="skip-link" href="#main">Skip to content</a>' in body, path
        assert 'id="main"' in body, path


def test_every_input_has_a_label(owner, account):
    lead = LeadFactory(account=account, last_inbound_at=timezone.now())
    client = logged_in(owner)
    for path in ("/leads", "/leads/new", f"/leads/{lead.pk}", f"/leads/{lead.pk}/edit"):
        body = client.get(path).content.decode()
        labelled = set(re.findall(r'<label for="([^"]+)"', body))
        for tag in re.findall(r"<(?:input|select|textarea)\b[^>]*>", body):
            if re.search(r'type="(hidden|submit)"', tag):
                continue
            field_id = re.search(r'id="([^"]+)"', tag)
            assert (field_id and field_id.group(1) in labelled) or "aria-label=" in tag, (path, tag)
        ids = re.findall(r'\bid="([^"]+)"', body)
        assert len(ids) == len(set(ids)), (path, sorted({i for i in ids if ids.count(i) > 1}))


def test_templates_have_no_inline_script_or_style_and_no_outside_assets():
    """The CSP allows only this site's scripts and styles: inline ones would be blocked."""
    for template in TEMPLATES.rglob("*.html"):
        if "drf_spectacular" in template.parts:
            continue
        source = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", source), template
        assert "<style" not in source, template
        assert not re.search(r"\sstyle=", source), template
        assert not re.search(r"\son[a-z]+=", source), template  # no inline event handlers
        assert not re.search(r'(src|href)="(https?:)?//', source), template


def test_htmx_is_vendored_and_served_by_this_site(owner):
    path = finders.find("vendor/htmx/htmx.min.js")
    assert path, "static/vendor/htmx/htmx.min.js is missing"
    assert "htmx" in Path(path).read_text()[:200]
    readme = Path(finders.find("vendor/README.md")).read_text()
    assert "htmx.org" in readme
    assert "2.0.11" in readme
    body = logged_in(owner).get("/").content.decode()
    assert '<script src="/static/vendor/htmx/htmx.min.js" defer></script>' in body
    assert '"includeIndicatorStyles": false' in body  # htmx would otherwise inject an inline style


def test_a_404_is_a_page_of_the_dashboard(owner):
    response = logged_in(owner).get("/leads/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert "Not found" in page_text(response)
    assert "Olivia Owner" in page_text(response)  # the layout around it
