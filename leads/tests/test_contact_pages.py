"""The contacts and tag pages of the dashboard through Django's test client: HeyDoc's
contact view (last message, unread count, tags, latest conversation first, search,
pagination), and tag management (create, rename/recolour, delete with confirmation).
They call the same selectors and services as the API: tenancy and agent scoping hold."""

import html
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.tests.helpers import csrf_from_form
from leads.models import Lead, Tag
from leads.tests.factories import LeadFactory, MessageFactory, TagFactory
from messaging.models import Message
from tests.pages import page_text

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]


def listed_names(response) -> list[str]:
    return [html.unescape(name) for name in re.findall(r'class="lead-name">([^<]+)</a>', response.content.decode())]


def row_of(response, lead: Lead) -> str:
    body = response.content.decode()
    match = re.search(rf'<tr data-contact-id="{lead.pk}">(.*?)</tr>', body, flags=re.S)
    assert match, f"{lead.name} is not on the page"
    return match.group(1)


def talked(lead: Lead, *, minutes_ago: int, bodies=("Hello",), unread: int = 0) -> None:
    """Messages for a lead, its newest `minutes_ago`; `unread` of the inbound ones unread."""
    at = timezone.now() - timedelta(minutes=minutes_ago)
    for i, body in enumerate(bodies):
        message = MessageFactory(lead=lead, body=body, is_read=i >= unread)
        Message.objects.filter(pk=message.pk).update(created_at=at - timedelta(seconds=len(bodies) - i))
    Lead.objects.filter(pk=lead.pk).update(last_message_at=at)


# --- The contacts list -------------------------------------------------------------------


def test_the_contacts_page_shows_heydocs_view_latest_conversation_first(owner_web, account):
    vip = TagFactory(account=account, name="VIP", color="#12ab34")
    old = LeadFactory(account=account, name="Old Talk", phone="+919700000001")
    new = LeadFactory(account=account, name="New Talk", phone="+919700000002", tags=[vip])
    silent = LeadFactory(account=account, name="Silent")
    talked(old, minutes_ago=60, bodies=("first", "older reply"))
    talked(new, minutes_ago=5, bodies=("hi", "how much?", "still there?"), unread=2)

    response = owner_web.get("/contacts")

    assert response.status_code == 200
    assert listed_names(response) == ["New Talk", "Old Talk", "Silent"]
    row = row_of(response, new)
    assert "+919700000002" in row
    assert "still there?" in row  # the last message
    assert 'aria-label="2 unread"' in row
    assert 'class="tag" data-color="#12ab34">VIP<' in row
    assert f'href="/leads/{new.pk}"' in row
    assert "No messages yet" in row_of(response, silent)
    assert 'aria-label="0 unread"' not in row_of(response, old)


def test_contacts_link_in_the_navigation_and_to_tag_management(owner_web, account):
    page = owner_web.get("/contacts").content.decode()
    assert 'href="/contacts"' in page  # the nav entry resolves now
    assert 'href="/contacts/tags"' in page


def test_an_empty_account_says_what_to_do_next(owner_web, account):
    text = page_text(owner_web.get("/contacts"))
    assert "No contacts yet" in text
    assert "add a lead" in text


def test_search_uses_the_leads_search_rules(owner_web, account):
    LeadFactory(account=account, name="Asha Rao", phone="+919711112222")
    LeadFactory(account=account, name="Vikram Shah", phone="+919733334444")
    assert listed_names(owner_web.get("/contacts?q=asha")) == ["Asha Rao"]
    assert listed_names(owner_web.get("/contacts?q=3333 4444")) == ["Vikram Shah"]
    nothing = owner_web.get("/contacts?q=zzz")
    assert listed_names(nothing) == []
    assert "No contacts match “zzz”" in page_text(nothing)


def test_a_huge_search_is_a_form_error_not_a_500(owner_web, account):
    LeadFactory(account=account, name="Asha Rao")
    response = owner_web.get("/contacts?q=" + "x" * 5000)
    assert response.status_code == 400
    assert "at most 100 characters" in page_text(response)
    assert listed_names(response) == ["Asha Rao"]  # the search is left out


def test_contacts_are_paginated(owner_web, account):
    LeadFactory.create_batch(27, account=account)
    first = owner_web.get("/contacts")
    second = owner_web.get("/contacts?page=2")
    assert len(listed_names(first)) == 25
    assert len(listed_names(second)) == 2
    assert "Page 2 of 2" in page_text(second)
    assert not set(listed_names(first)) & set(listed_names(second))
    assert listed_names(owner_web.get("/contacts?page=abc")) == listed_names(first)


def test_other_accounts_contacts_never_show(owner_web, account, other_account):
    LeadFactory(account=account, name="Mine")
    LeadFactory(account=other_account, name="Theirs")
    assert listed_names(owner_web.get("/contacts")) == ["Mine"]
    assert listed_names(owner_web.get("/contacts?q=Theirs")) == []


def test_an_agent_sees_only_their_and_unassigned_contacts(agent_web, account, agent, owner):
    LeadFactory(account=account, name="Agent's", assigned_to=agent)
    LeadFactory(account=account, name="Nobody's")
    LeadFactory(account=account, name="Owner's", assigned_to=owner)
    assert sorted(listed_names(agent_web.get("/contacts"))) == ["Agent's", "Nobody's"]


def test_contacts_need_a_login(client):
    response = client.get("/contacts")
    assert response.status_code == 302
    assert response["Location"].startswith("/login")


def test_the_contacts_page_runs_a_constant_number_of_queries(owner_web, account, django_assert_max_num_queries):
    tags = TagFactory.create_batch(3, account=account)

    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert owner_web.get("/contacts?q=a").status_code == 200
        return len(queries)

    lead = LeadFactory(account=account, name="Aa", tags=tags[:1])
    talked(lead, minutes_ago=1, unread=1)
    count_queries()  # the session's first request records its start
    few = count_queries()
    for i in range(20):
        more = LeadFactory(account=account, name=f"Ab {i}", tags=tags)
        talked(more, minutes_ago=i + 2, bodies=("x", "y"), unread=1)
    many = count_queries()
    assert few == many
    with django_assert_max_num_queries(8):
        owner_web.get("/contacts?page=1")


# --- Tags --------------------------------------------------------------------------------


def test_the_tag_list_shows_lead_counts(owner_web, account):
    hot = TagFactory(account=account, name="Hot", color="#ff0000")
    TagFactory(account=account, name="Unused")
    LeadFactory.create_batch(2, account=account, tags=[hot])
    TagFactory(account=LeadFactory().account, name="Foreign")
    response = owner_web.get("/contacts/tags")
    body = response.content.decode()
    assert response.status_code == 200
    counts = dict(re.findall(r'data-color="#[0-9a-f]{6}">([^<]+)</span>.*?data-testid="lead-count">(\d+)<', body, re.S))
    assert counts == {"Hot": "2", "Unused": "0"}


def test_no_tags_says_what_to_do_next(owner_web, account):
    assert "No tags yet" in page_text(owner_web.get("/contacts/tags"))


def test_create_a_tag(owner_web, account):
    response = owner_web.post("/contacts/tags", {"name": "  Follow up ", "color": "#00AA11"})
    assert response.status_code == 302
    tag = Tag.objects.get(account=account)
    assert (tag.name, tag.color) == ("Follow up", "#00AA11")
    assert "Tag “Follow up” created." in page_text(owner_web.get(response["Location"]))


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"name": "", "color": "#112233"}, "This field is required."),
        ({"name": "   ", "color": "#112233"}, "This field is required."),
        ({"name": "x" * 51, "color": "#112233"}, "at most 50 characters"),
        ({"name": "Ok", "color": "red"}, "Enter a colour like #ff4444."),
        ({"name": "Ok", "color": "#12345g"}, "Enter a colour like #ff4444."),
        ({"name": "Ok"}, "This field is required."),
        ({"name": "vip", "color": "#112233"}, "A tag with this name already exists."),
    ],
)
def test_tag_creation_errors_are_shown_on_the_form(owner_web, account, data, error):
    TagFactory(account=account, name="VIP")
    response = owner_web.post("/contacts/tags", data)
    assert response.status_code == 400
    assert error in page_text(response)
    assert Tag.objects.count() == 1


def test_an_agent_may_create_and_rename_tags_like_the_api_allows(agent_web, account):
    assert agent_web.post("/contacts/tags", {"name": "Agent tag", "color": "#123456"}).status_code == 302
    tag = Tag.objects.get(account=account)
    assert agent_web.post(f"/contacts/tags/{tag.pk}/edit", {"name": "Renamed", "color": "#654321"}).status_code == 302
    tag.refresh_from_db()
    assert (tag.name, tag.color) == ("Renamed", "#654321")


def test_rename_and_recolour_a_tag(owner_web, account):
    tag = TagFactory(account=account, name="Old", color="#111111")
    form = owner_web.get(f"/contacts/tags/{tag.pk}/edit")
    assert 'value="Old"' in form.content.decode()
    assert 'value="#111111"' in form.content.decode()
    response = owner_web.post(f"/contacts/tags/{tag.pk}/edit", {"name": "New", "color": "#222222"})
    assert response.status_code == 302
    tag.refresh_from_db()
    assert (tag.name, tag.color) == ("New", "#222222")
    assert "Tag “New” saved." in page_text(owner_web.get("/contacts/tags"))


def test_renaming_to_a_taken_name_is_a_form_error_and_changes_nothing(owner_web, account):
    TagFactory(account=account, name="Taken")
    tag = TagFactory(account=account, name="Mine", color="#111111")
    response = owner_web.post(f"/contacts/tags/{tag.pk}/edit", {"name": "TAKEN", "color": "#222222"})
    assert response.status_code == 400
    assert "A tag with this name already exists." in page_text(response)
    tag.refresh_from_db()
    assert (tag.name, tag.color) == ("Mine", "#111111")


def test_delete_a_tag_asks_first_and_keeps_its_leads(owner_web, account):
    tag = TagFactory(account=account, name="Gone")
    lead = LeadFactory(account=account, tags=[tag])
    ask = owner_web.get(f"/contacts/tags/{tag.pk}/delete")
    assert ask.status_code == 200
    assert "Delete the tag “Gone”?" in page_text(ask)
    assert "removed from 1 lead;" in page_text(ask)
    assert Tag.objects.filter(pk=tag.pk).exists()
    done = owner_web.post(f"/contacts/tags/{tag.pk}/delete")
    assert done.status_code == 302
    assert not Tag.objects.filter(pk=tag.pk).exists()
    assert Lead.objects.filter(pk=lead.pk).exists()
    assert "Tag “Gone” deleted." in page_text(owner_web.get("/contacts/tags"))


def test_an_agent_cannot_delete_a_tag(agent_web, account):
    tag = TagFactory(account=account, name="Kept")
    assert "Delete…" not in agent_web.get("/contacts/tags").content.decode()
    assert agent_web.get(f"/contacts/tags/{tag.pk}/delete").status_code == 403
    response = agent_web.post(f"/contacts/tags/{tag.pk}/delete")
    assert response.status_code == 302
    assert Tag.objects.filter(pk=tag.pk).exists()
    assert "Only account admins can delete tags." in page_text(agent_web.get("/contacts/tags"))


@pytest.mark.parametrize("route", ["/contacts/tags/{id}/edit", "/contacts/tags/{id}/delete"])
def test_another_accounts_tag_is_404(owner_web, other_account, route):
    theirs = TagFactory(account=other_account, name="Theirs", color="#111111")
    assert owner_web.get(route.format(id=theirs.pk)).status_code == 404
    assert owner_web.post(route.format(id=theirs.pk), {"name": "Hijacked", "color": "#000000"}).status_code == 404
    theirs.refresh_from_db()
    assert (theirs.name, theirs.color) == ("Theirs", "#111111")
    assert owner_web.get("/contacts/tags/999999999/edit").status_code == 404


@pytest.mark.parametrize("route", ["/contacts/tags", "/contacts/tags/{id}/edit", "/contacts/tags/{id}/delete"])
def test_every_tag_form_needs_its_csrf_token(owner, account, route):
    tag = TagFactory(account=account, name="Untouched", color="#111111")
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    data = {"name": "Changed", "color": "#222222"}
    assert client.post(route.format(id=tag.pk), data).status_code == 403
    assert list(Tag.objects.values_list("name", "color")) == [("Untouched", "#111111")]
    token = csrf_from_form(client.get(route.format(id=tag.pk)).content)
    assert client.post(route.format(id=tag.pk), {**data, "csrfmiddlewaretoken": token}).status_code == 302


def test_the_tag_list_runs_a_constant_number_of_queries(owner_web, account):
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert owner_web.get("/contacts/tags").status_code == 200
        return len(queries)

    TagFactory(account=account)
    count_queries()  # the session's first request records its start
    few = count_queries()
    tags = TagFactory.create_batch(15, account=account)
    LeadFactory.create_batch(5, account=account, tags=tags)
    assert count_queries() == few
