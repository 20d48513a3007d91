"""The lead pages of the dashboard through Django's test client: the list (filters,
sorting, pagination, empty states, bulk actions), create and edit forms, the lead
page's details, tags, activity, opt-out and delete. Every page calls the same
selectors and services as the API: tenancy and agent scoping hold here too."""

import html
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from accounts.tests.factories import UserFactory
from accounts.tests.helpers import csrf_from_form
from leads.models import Engagement, Lead, Tag
from leads.tests.factories import EngagementFactory, LeadFactory, TagFactory
from tests.pages import page_text

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]


def listed_names(response) -> list[str]:
    """The lead names in the list's table, in order."""
    return [html.unescape(name) for name in re.findall(r'class="lead-name">([^<]+)</a>', response.content.decode())]


def flashes(client: Client, url: str = "/leads") -> str:
    return page_text(client.get(url))


@pytest.fixture
def colleague(account) -> User:
    return UserFactory(account=account, email="colleague@acme.test", name="Chen Colleague", role=User.Role.AGENT)


# --- Access -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/leads", "/leads/new", f"/leads/{uuid.uuid4()}", f"/leads/{uuid.uuid4()}/edit", "/leads/bulk"]
)
def test_visitors_are_sent_to_the_login(client, path):
    response = client.get(path)
    assert response.status_code in (302, 405)
    if response.status_code == 302:
        assert response["Location"].startswith("/login?next=")


def test_the_list_shows_only_the_accounts_leads(owner_web, account, other_account):
    LeadFactory(account=account, name="Asha Mine")
    LeadFactory(account=other_account, name="Greta Theirs")
    response = owner_web.get("/leads")
    assert response.status_code == 200
    assert listed_names(response) == ["Asha Mine"]


def test_an_agent_sees_their_leads_and_unassigned_ones_only(agent_web, account, agent, colleague):
    LeadFactory(account=account, name="Mine", assigned_to=agent)
    LeadFactory(account=account, name="Nobody's")
    LeadFactory(account=account, name="Colleague's", assigned_to=colleague)
    assert sorted(listed_names(agent_web.get("/leads"))) == ["Mine", "Nobody's"]


# --- Filters, sorting, pagination --------------------------------------------------------


@pytest.fixture
def mixed_leads(account, owner, agent):
    vip = TagFactory(account=account, name="VIP")
    now = timezone.now()
    leads = {
        "hot": LeadFactory(account=account, name="Hot Harini", segment="hot", status="qualified", tags=[vip]),
        "warm": LeadFactory(account=account, name="Warm Wasim", segment="warm", source="Referral", assigned_to=agent),
        "cold": LeadFactory(
            account=account, name="Cold Chitra", segment="cold", email="chitra@corp.example", assigned_to=owner
        ),
        "out": LeadFactory(account=account, name="Opted Omar", is_opted_out=True, phone="+919811112222"),
    }
    Lead.objects.filter(pk=leads["cold"].pk).update(created_at=now - timedelta(days=10))
    return {**leads, "vip": vip}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=qualified", ["Hot Harini"]),
        ("segment=warm", ["Warm Wasim"]),
        ("source=referral", ["Warm Wasim"]),
        ("assignedTo=unassigned", ["Hot Harini", "Opted Omar"]),
        ("isOptedOut=true", ["Opted Omar"]),
        ("isOptedOut=false", ["Cold Chitra", "Hot Harini", "Warm Wasim"]),
        ("search=chitra%40corp", ["Cold Chitra"]),
        ("search=%2B91+98111", ["Opted Omar"]),
        ("search=wasim", ["Warm Wasim"]),
        ("segment=hot&status=lost", []),
    ],
)
def test_the_list_filters_like_the_api(owner_web, mixed_leads, query, expected):
    response = owner_web.get(f"/leads?{query}")
    assert response.status_code == 200
    assert sorted(listed_names(response)) == sorted(expected)


def test_filter_by_assignee_me_and_by_user(owner_web, agent_web, mixed_leads, agent):
    assert listed_names(owner_web.get(f"/leads?assignedTo={agent.pk}")) == ["Warm Wasim"]
    assert listed_names(owner_web.get("/leads?assignedTo=me")) == ["Cold Chitra"]
    assert listed_names(agent_web.get("/leads?assignedTo=me")) == ["Warm Wasim"]


def test_filter_by_tag_and_created_range(owner_web, mixed_leads, account):
    assert listed_names(owner_web.get(f"/leads?tag={mixed_leads['vip'].pk}")) == ["Hot Harini"]
    today = timezone.localdate()
    old_day = (timezone.now() - timedelta(days=10)).date()
    assert listed_names(owner_web.get(f"/leads?createdFrom={old_day}&createdTo={old_day}")) == ["Cold Chitra"]
    assert "Cold Chitra" not in listed_names(owner_web.get(f"/leads?createdFrom={today}"))


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("status=bogus", "Select a valid choice"),
        ("segment=%3Cscript%3E", "Select a valid choice"),
        (f"assignedTo={uuid.uuid4()}", "Select a valid choice"),
        ("assignedTo=not-a-user", "Select a valid choice"),
        ("tag=999999", "Select a valid choice"),
        ("createdFrom=2026-13-45", "Enter a valid date"),
        ("createdFrom=2026-02-10&createdTo=2026-02-01", "Must not be before"),
        ("isOptedOut=maybe", "Select a valid choice"),
        ("sort=password", "Select a valid choice"),
        ("search=" + "x" * 500, "at most 200 characters"),
    ],
)
def test_bad_filter_values_are_shown_and_the_rest_still_lists(owner_web, mixed_leads, query, error):
    response = owner_web.get(f"/leads?{query}")
    assert response.status_code == 200
    assert error in page_text(response)
    if "createdTo=2026-02-01" not in query and "search=" not in query:
        assert len(listed_names(response)) == 4  # the bad filter is left out


def test_another_accounts_tag_is_not_a_filter(owner_web, mixed_leads, other_account):
    theirs = TagFactory(account=other_account, name="Theirs")
    response = owner_web.get(f"/leads?tag={theirs.pk}")
    assert "Select a valid choice" in page_text(response)
    assert len(listed_names(response)) == 4


def test_sorting(owner_web, account):
    now = timezone.now()
    LeadFactory(account=account, name="Bela", last_message_at=now - timedelta(hours=1))
    LeadFactory(account=account, name="Anil", last_message_at=None)
    LeadFactory(account=account, name="Chandra", last_message_at=now)
    assert listed_names(owner_web.get("/leads?sort=name")) == ["Anil", "Bela", "Chandra"]
    assert listed_names(owner_web.get("/leads?sort=-name")) == ["Chandra", "Bela", "Anil"]
    assert listed_names(owner_web.get("/leads?sort=-last_message")) == ["Chandra", "Bela", "Anil"]
    assert listed_names(owner_web.get("/leads?sort=created")) == ["Bela", "Anil", "Chandra"]
    assert listed_names(owner_web.get("/leads")) == ["Chandra", "Anil", "Bela"]  # newest first


def test_pagination_counts_and_keeps_the_filters(owner_web, account):
    LeadFactory.create_batch(30, account=account, segment="hot")
    LeadFactory.create_batch(3, account=account, segment="cold")
    first = owner_web.get("/leads?segment=hot")
    assert "Showing 1\N{EN DASH}25 of 30 leads matching the filters" in page_text(first)
    assert len(listed_names(first)) == 25
    assert 'href="?segment=hot&amp;page=2"' in first.content.decode()
    second = owner_web.get("/leads?segment=hot&page=2")
    assert "Showing 26\N{EN DASH}30 of 30 leads" in page_text(second)
    assert len(listed_names(second)) == 5
    assert not set(listed_names(first)) & set(listed_names(second))


@pytest.mark.parametrize("page", ["abc", "-1", "0", "99999", "1e9", "%00"])
def test_a_bad_page_number_shows_a_page_not_an_error(owner_web, account, page):
    LeadFactory.create_batch(3, account=account)
    response = owner_web.get(f"/leads?page={page}")
    assert response.status_code == 200
    assert len(listed_names(response)) == 3


def test_the_list_with_a_trailing_slash_redirects_with_its_filters(owner_web):
    response = owner_web.get("/leads/?segment=hot&page=2")
    assert response.status_code == 302
    assert response["Location"] == "/leads?segment=hot&page=2"


def test_the_empty_list_says_what_to_do_next(owner_web, account):
    text = page_text(owner_web.get("/leads"))
    assert "No leads yet" in text
    assert "Add a lead" in text
    assert str(account.pk) in text  # the webhook's userId


def test_an_empty_filtered_list_offers_to_clear_the_filters(owner_web, account):
    LeadFactory(account=account, segment="hot")
    response = owner_web.get("/leads?segment=cold")
    assert "No leads match these filters" in page_text(response)
    assert 'href="/leads"' in response.content.decode()


def test_the_list_page_runs_a_constant_number_of_queries(
    owner_web, account, owner, agent, django_assert_max_num_queries
):
    tags = TagFactory.create_batch(3, account=account)

    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert owner_web.get("/leads?sort=-last_message").status_code == 200
        return len(queries)

    LeadFactory.create_batch(2, account=account, tags=tags[:2], assigned_to=agent)
    count_queries()  # the session's first request records its start
    few = count_queries()
    LeadFactory.create_batch(40, account=account, tags=tags, assigned_to=owner)
    many = count_queries()
    assert few == many
    with django_assert_max_num_queries(12):
        owner_web.get(f"/leads?status=pending&tag={tags[0].pk}&search=a")


# --- Bulk actions ----------------------------------------------------------------------------


def test_the_bulk_bar_enrolls_in_active_drips_and_starts_a_broadcast(owner_web, account, other_account):
    from campaigns.models import Drip

    Drip.objects.create(account=account, name="Welcome series")
    Drip.objects.create(account=account, name="Paused series", is_active=False)
    Drip.objects.create(account=other_account, name="Their series")
    LeadFactory(account=account)
    body = owner_web.get("/leads").content.decode()
    drip_select = re.search(r'<select name="drip" id="bulk-drip">(.*?)</select>', body, re.S).group(1)
    assert "Welcome series" in drip_select
    assert "Paused series" not in drip_select
    assert "Their series" not in drip_select
    assert 'formaction="/drips/enroll"' in body
    assert 'formaction="/broadcasts/new"' in body


def bulk(client: Client, ids, action: str, **fields):
    data = {"ids": [str(i) for i in ids], "action": action, "next": "/leads?segment=hot", **fields}
    return client.post("/leads/bulk", data)


def test_bulk_assign(owner_web, account, agent):
    leads = LeadFactory.create_batch(3, account=account)
    response = bulk(owner_web, [leads[0].pk, leads[1].pk], "assign", assignee=str(agent.pk))
    assert response.status_code == 302
    assert response["Location"] == "/leads?segment=hot"
    assert set(Lead.objects.filter(assigned_to=agent).values_list("pk", flat=True)) == {leads[0].pk, leads[1].pk}
    assert "2 leads assigned." in flashes(owner_web)
    bulk(owner_web, [leads[0].pk], "assign", assignee="unassigned")
    assert Lead.objects.get(pk=leads[0].pk).assigned_to is None


@pytest.mark.parametrize(
    ("action", "fields", "check"),
    [
        ("status", {"status": "converted"}, lambda lead: lead.status == "converted"),
        ("segment", {"segment": "warm"}, lambda lead: lead.segment == "warm"),
        ("segment", {"segment": "none"}, lambda lead: lead.segment == ""),
        ("opt_out", {}, lambda lead: lead.is_opted_out and lead.opted_out_at is not None),
        ("tag", {"tag": "Follow up"}, lambda lead: [t.name for t in lead.tags.all()] == ["Follow up"]),
    ],
)
def test_bulk_changes_every_selected_lead(owner_web, account, action, fields, check):
    chosen = LeadFactory.create_batch(3, account=account, segment="hot")
    other = LeadFactory(account=account, segment="hot")
    bulk(owner_web, [lead.pk for lead in chosen], action, **fields)
    assert all(check(Lead.objects.get(pk=lead.pk)) for lead in chosen)
    assert not check(Lead.objects.get(pk=other.pk))


def test_bulk_tag_reuses_an_existing_tag_case_insensitively_and_keeps_others(owner_web, account):
    vip = TagFactory(account=account, name="VIP")
    old = TagFactory(account=account, name="Old")
    lead = LeadFactory(account=account, tags=[old])
    tagged = LeadFactory(account=account, tags=[vip])
    bulk(owner_web, [lead.pk, tagged.pk], "tag", tag="vip")
    assert Tag.objects.filter(account=account).count() == 2
    assert sorted(t.name for t in lead.tags.all()) == ["Old", "VIP"]
    assert [t.name for t in tagged.tags.all()] == ["VIP"]


def test_bulk_opt_in(owner_web, account):
    lead = LeadFactory(account=account, is_opted_out=True, opt_out_reason="STOP")
    bulk(owner_web, [lead.pk], "opt_in")
    lead.refresh_from_db()
    assert not lead.is_opted_out
    assert lead.opt_out_reason == ""


def test_bulk_delete_asks_first_then_deletes(owner_web, account):
    leads = LeadFactory.create_batch(2, account=account)
    keep = LeadFactory(account=account)
    ask = bulk(owner_web, [lead.pk for lead in leads], "delete")
    assert ask.status_code == 200
    assert "Delete 2 leads?" in page_text(ask)
    assert Lead.objects.count() == 3  # nothing deleted yet
    token = csrf_from_form(ask.content)
    hidden_ids = re.findall(r'name="ids" value="([^"]+)"', ask.content.decode())
    done = owner_web.post(
        "/leads/bulk",
        {"ids": hidden_ids, "action": "delete", "confirm": "on", "next": "/leads", "csrfmiddlewaretoken": token},
    )
    assert done.status_code == 302
    assert list(Lead.objects.values_list("pk", flat=True)) == [keep.pk]
    assert "2 leads deleted." in flashes(owner_web)


def test_an_agent_cannot_bulk_delete(agent_web, account):
    lead = LeadFactory(account=account)
    response = bulk(agent_web, [lead.pk], "delete", confirm="on")
    assert response.status_code == 302
    assert Lead.objects.filter(pk=lead.pk).exists()
    assert "Only account admins can delete leads." in flashes(agent_web)


def test_an_agent_may_only_assign_to_themselves(agent_web, account, agent, colleague):
    lead = LeadFactory(account=account)
    bulk(agent_web, [lead.pk], "assign", assignee=str(colleague.pk))
    assert Lead.objects.get(pk=lead.pk).assigned_to is None
    bulk(agent_web, [lead.pk], "assign", assignee=str(agent.pk))
    assert Lead.objects.get(pk=lead.pk).assigned_to == agent


def test_bulk_with_a_lead_of_another_account_changes_nothing(owner_web, account, other_account):
    mine = LeadFactory(account=account, status="pending")
    theirs = LeadFactory(account=other_account, status="pending")
    bulk(owner_web, [mine.pk, theirs.pk], "status", status="lost")
    assert set(Lead.objects.values_list("status", flat=True)) == {"pending"}
    assert "Nothing was changed" in flashes(owner_web)


def test_an_agent_cannot_bulk_change_a_colleagues_lead(agent_web, account, colleague):
    theirs = LeadFactory(account=account, assigned_to=colleague)
    mine = LeadFactory(account=account)
    bulk(agent_web, [mine.pk, theirs.pk], "opt_out")
    assert not Lead.objects.filter(is_opted_out=True).exists()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"action": "status", "status": "lost"}, "Select at least one lead."),
        ({"action": "status", "status": "lost", "ids": ["not-a-uuid"]}, "not a lead"),
        ({"action": "explode", "ids": ["LEAD"]}, "Select a valid choice"),
        ({"action": "status", "status": "won", "ids": ["LEAD"]}, "Select a valid choice"),
        ({"action": "status", "ids": ["LEAD"]}, "Choose the status to set."),
        ({"action": "tag", "tag": "   ", "ids": ["LEAD"]}, "Give the tag to add."),
        ({"action": "assign", "ids": ["LEAD"]}, "Choose whom to assign the leads to."),
        ({"action": "tag", "tag": "x" * 51, "ids": ["LEAD"]}, "at most 50 characters"),
        ({"action": "assign", "assignee": str(uuid.uuid4()), "ids": ["LEAD"]}, "Select a valid choice"),
    ],
)
def test_bad_bulk_requests_change_nothing_and_say_why(owner_web, account, data, error):
    lead = LeadFactory(account=account, status="pending")
    data = {**data, "ids": [str(lead.pk) if i == "LEAD" else i for i in data.get("ids", [])]}
    response = owner_web.post("/leads/bulk", {**data, "next": "https://evil.example/"})
    assert response.status_code == 302
    assert response["Location"] == "/leads"  # never off-site
    assert error in flashes(owner_web)
    lead.refresh_from_db()
    assert (lead.status, lead.assigned_to, lead.tags.count()) == ("pending", None, 0)


def test_bulk_needs_a_post(owner_web):
    assert owner_web.get("/leads/bulk").status_code == 405


# --- Create and edit ----------------------------------------------------------------------------


LEAD_FORM = {
    "name": "Priya Sharma",
    "phone": "+91 98765 43210",
    "email": "Priya@Example.com",
    "source": "Website Form",
    "status": "pending",
    "segment": "hot",
    "assigned_to": "",
    "tags": "VIP, Mumbai, VIP",
    "inquiry": "2BHK in Andheri",
    "notes": "",
}


def test_create_a_lead(owner_web, account, agent):
    response = owner_web.post("/leads/new", {**LEAD_FORM, "assigned_to": str(agent.pk)})
    lead = Lead.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/leads/{lead.pk}"
    assert (lead.account, lead.phone, lead.email, lead.assigned_to) == (
        account,
        "+919876543210",
        "priya@example.com",
        agent,
    )
    assert sorted(t.name for t in lead.tags.all()) == ["Mumbai", "VIP"]
    assert "Lead “Priya Sharma” created." in page_text(owner_web.get(response["Location"]))


@pytest.mark.parametrize(
    ("changes", "field", "error"),
    [
        ({"phone": "12345"}, "phone", "is not a valid phone number"),
        ({"phone": "98765abcde"}, "phone", "only digits"),
        ({"phone": ""}, "phone", "This field is required."),
        ({"name": ""}, "name", "This field is required."),
        ({"name": "<b></b>"}, "name", "Name is required"),
        ({"name": "x" * 201}, "name", "at most 200 characters"),
        ({"email": "not-an-email"}, "email", "Enter a valid email address."),
        ({"status": "won"}, "status", "Select a valid choice"),
        ({"segment": "lukewarm"}, "segment", "Select a valid choice"),
        ({"assigned_to": str(uuid.uuid4())}, "assigned_to", "Select a valid choice"),
        ({"tags": "x" * 60}, "tags", "at most 50 characters"),
        ({"notes": "n" * 10001}, "notes", "at most 10000 characters"),
    ],
)
def test_create_with_bad_input_shows_the_error_on_its_field(owner_web, changes, field, error):
    response = owner_web.post("/leads/new", {**LEAD_FORM, **changes})
    assert response.status_code == 400
    assert not Lead.objects.exists()
    errors = response.context["form"].errors
    assert any(error in message for message in errors[field]), errors
    assert error.replace("'", "&#x27;") in response.content.decode() or error in page_text(response)


def test_create_with_a_phone_already_in_the_account_is_refused(owner_web, account):
    LeadFactory(account=account, phone="+919876543210")
    response = owner_web.post("/leads/new", {**LEAD_FORM, "phone": "09876543210"})
    assert response.status_code == 400
    assert "A lead with this phone number already exists." in page_text(response)
    assert Lead.objects.count() == 1


def test_the_same_phone_in_another_account_is_fine(owner_web, other_account):
    LeadFactory(account=other_account, phone="+919876543210")
    assert owner_web.post("/leads/new", LEAD_FORM).status_code == 302


def test_an_agent_creates_leads_for_themselves_only(agent_web, agent, colleague):
    refused = agent_web.post("/leads/new", {**LEAD_FORM, "assigned_to": str(colleague.pk)})
    assert refused.status_code == 400
    assert not Lead.objects.exists()
    agent_web.post("/leads/new", {**LEAD_FORM, "assigned_to": str(agent.pk)})
    assert Lead.objects.get().assigned_to == agent


def test_free_text_is_stored_without_html_and_shown_escaped(owner_web):
    owner_web.post("/leads/new", {**LEAD_FORM, "name": "Ravi <script>alert(1)</script>", "notes": "<i>call</i> me"})
    lead = Lead.objects.get()
    assert (lead.name, lead.notes) == ("Ravi", "call me")
    assert "<script>alert" not in owner_web.get(f"/leads/{lead.pk}").content.decode()


def test_edit_a_lead(owner_web, account):
    lead = LeadFactory(account=account, name="Old Name", status="pending")
    form = owner_web.get(f"/leads/{lead.pk}/edit")
    assert form.status_code == 200
    assert 'value="Old Name"' in form.content.decode()
    response = owner_web.post(f"/leads/{lead.pk}/edit", {**LEAD_FORM, "name": "New Name", "status": "contacted"})
    assert response.status_code == 302
    lead.refresh_from_db()
    assert (lead.name, lead.status, lead.phone) == ("New Name", "contacted", "+919876543210")


def test_edit_with_a_bad_phone_keeps_the_lead_unchanged(owner_web, account):
    lead = LeadFactory(account=account, name="Kept", phone="+919800000001")
    response = owner_web.post(f"/leads/{lead.pk}/edit", {**LEAD_FORM, "name": "Changed", "phone": "123"})
    assert response.status_code == 400
    lead.refresh_from_db()
    assert (lead.name, lead.phone) == ("Kept", "+919800000001")


# --- Tenancy on every lead route ------------------------------------------------------------------


LEAD_ROUTES = [
    ("get", "/leads/{id}"),
    ("get", "/leads/{id}/edit"),
    ("post", "/leads/{id}/edit"),
    ("get", "/leads/{id}/delete"),
    ("post", "/leads/{id}/delete"),
    ("post", "/leads/{id}/engagements"),
    ("post", "/leads/{id}/tags"),
    ("post", "/leads/{id}/tags/1/remove"),
    ("post", "/leads/{id}/opt-out"),
    ("post", "/leads/{id}/opt-in"),
    ("get", "/leads/{id}/conversation"),
    ("post", "/leads/{id}/reply"),
]


@pytest.mark.parametrize(("method", "route"), LEAD_ROUTES)
def test_another_accounts_lead_is_404_everywhere(owner_web, other_account, method, route):
    theirs = LeadFactory(account=other_account, name="Theirs", is_opted_out=False)
    response = getattr(owner_web, method)(route.format(id=theirs.pk), {**LEAD_FORM, "message": "hi", "type": "note"})
    assert response.status_code == 404
    assert "Theirs" not in response.content.decode()
    assert Lead.objects.filter(pk=theirs.pk, name="Theirs", is_opted_out=False).exists()


@pytest.mark.parametrize(("method", "route"), LEAD_ROUTES)
def test_an_agent_gets_404_for_a_colleagues_lead(agent_web, account, colleague, method, route):
    theirs = LeadFactory(account=account, name="Colleague Lead", assigned_to=colleague)
    response = getattr(agent_web, method)(route.format(id=theirs.pk), {**LEAD_FORM, "message": "hi", "type": "note"})
    assert response.status_code == 404
    assert Lead.objects.filter(pk=theirs.pk, name="Colleague Lead").exists()


@pytest.mark.parametrize("path", ["/leads/not-a-uuid", "/leads/123", f"/leads/{uuid.uuid4()}"])
def test_a_missing_or_malformed_lead_id_is_a_404_page(owner_web, path):
    response = owner_web.get(path)
    assert response.status_code == 404
    assert "text/html" in response["Content-Type"]


# --- The lead page --------------------------------------------------------------------------------


def test_the_lead_page_shows_details_tags_and_activity(owner_web, account, agent):
    account.time_zone = "Asia/Kolkata"
    account.save()
    vip = TagFactory(account=account, name="VIP")
    lead = LeadFactory(
        account=account,
        name="Meera Nair",
        email="meera@example.com",
        source="Referral",
        inquiry="Sea-facing 3BHK",
        assigned_to=agent,
        tags=[vip],
    )
    EngagementFactory(
        lead=lead, type="call", notes="Discussed budget", user=agent, at=datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    )
    text = page_text(owner_web.get(f"/leads/{lead.pk}"))
    for expected in (
        "Meera Nair",
        lead.phone,
        "meera@example.com",
        "Referral",
        "Sea-facing 3BHK",
        "Aditya Agent",
        "VIP",
    ):
        assert expected in text
    # 06:00 UTC is 11:30 in Kolkata, the account's time zone.
    assert "Call 1 Mar 2026, 11:30 · Aditya Agent Discussed budget" in text


def test_the_lead_page_runs_a_constant_number_of_queries(owner_web, account):
    lead = LeadFactory(account=account, tags=TagFactory.create_batch(2, account=account))
    from leads.tests.factories import MessageFactory

    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert owner_web.get(f"/leads/{lead.pk}").status_code == 200
        return len(queries)

    count_queries()  # the first view loads the sandbox's templates
    EngagementFactory.create_batch(2, lead=lead)
    MessageFactory.create_batch(2, lead=lead)  # inbound, unread: the view marks them read
    few = count_queries()
    EngagementFactory.create_batch(30, lead=lead)
    MessageFactory.create_batch(30, lead=lead, direction="outbound", status="read")
    MessageFactory.create_batch(2, lead=lead)  # unread again, as before the first count
    lead.tags.add(*TagFactory.create_batch(5, account=account))
    assert count_queries() == few


def test_log_an_engagement(owner_web, account, owner):
    account.time_zone = "Asia/Kolkata"
    account.save()
    lead = LeadFactory(account=account)
    response = owner_web.post(
        f"/leads/{lead.pk}/engagements", {"type": "meeting", "notes": "Site visit", "at": "2026-03-02T10:15"}
    )
    assert response.status_code == 302
    engagement = Engagement.objects.get()
    assert (engagement.type, engagement.notes, engagement.user) == ("meeting", "Site visit", owner)
    # Typed in the account's time zone: 10:15 in Kolkata is 04:45 UTC.
    assert engagement.at == datetime(2026, 3, 2, 4, 45, tzinfo=UTC)


def test_log_an_engagement_without_a_time_means_now(owner_web, account):
    lead = LeadFactory(account=account)
    before = timezone.now()
    owner_web.post(f"/leads/{lead.pk}/engagements", {"type": "note", "notes": ""})
    assert Engagement.objects.get().at >= before


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"type": "telepathy"}, "Select a valid choice"),
        ({"type": ""}, "This field is required."),
        ({"type": "call", "at": "yesterday"}, "Enter a valid date/time."),
        ({"type": "call", "notes": "n" * 5001}, "at most 5000 characters"),
    ],
)
def test_a_bad_engagement_shows_the_error_and_logs_nothing(owner_web, account, data, error):
    lead = LeadFactory(account=account)
    response = owner_web.post(f"/leads/{lead.pk}/engagements", data)
    assert response.status_code == 400
    assert error in page_text(response)
    assert not Engagement.objects.exists()


def test_add_and_remove_tags(owner_web, account):
    lead = LeadFactory(account=account)
    vip = TagFactory(account=account, name="VIP")
    owner_web.post(f"/leads/{lead.pk}/tags", {"tags": "vip, New One"})
    assert sorted(t.name for t in lead.tags.all()) == ["New One", "VIP"]
    assert Tag.objects.filter(account=account).count() == 2
    owner_web.post(f"/leads/{lead.pk}/tags/{vip.pk}/remove")
    assert [t.name for t in lead.tags.all()] == ["New One"]


def test_adding_no_tag_is_an_error(owner_web, account):
    lead = LeadFactory(account=account)
    response = owner_web.post(f"/leads/{lead.pk}/tags", {"tags": " , ,"})
    assert response.status_code == 400
    assert "Give a tag name." in page_text(response)


def test_removing_another_accounts_tag_is_404(owner_web, account, other_account):
    lead = LeadFactory(account=account)
    theirs = TagFactory(account=other_account)
    assert owner_web.post(f"/leads/{lead.pk}/tags/{theirs.pk}/remove").status_code == 404


def test_opt_a_lead_out_and_back_in(owner_web, account):
    lead = LeadFactory(account=account)
    owner_web.post(f"/leads/{lead.pk}/opt-out", {"reason": "Asked by phone"})
    lead.refresh_from_db()
    assert (lead.is_opted_out, lead.opt_out_reason) == (True, "Asked by phone")
    assert "Asked by phone" in page_text(owner_web.get(f"/leads/{lead.pk}"))
    owner_web.post(f"/leads/{lead.pk}/opt-in")
    lead.refresh_from_db()
    assert not lead.is_opted_out


def test_delete_a_lead_after_confirming(owner_web, account):
    lead = LeadFactory(account=account, name="Gone Soon")
    ask = owner_web.get(f"/leads/{lead.pk}/delete")
    assert "Delete Gone Soon?" in page_text(ask)
    assert Lead.objects.exists()
    response = owner_web.post(f"/leads/{lead.pk}/delete")
    assert response.status_code == 302
    assert response["Location"] == "/leads"
    assert not Lead.objects.exists()


def test_an_agent_cannot_delete_a_lead(agent_web, account):
    lead = LeadFactory(account=account)
    response = agent_web.post(f"/leads/{lead.pk}/delete")
    assert response.status_code == 302
    assert Lead.objects.filter(pk=lead.pk).exists()
    assert "Delete…" not in agent_web.get(f"/leads/{lead.pk}").content.decode()


# --- CSRF ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "route",
    [
        "/leads/new",
        "/leads/bulk",
        "/leads/{id}/edit",
        "/leads/{id}/delete",
        "/leads/{id}/engagements",
        "/leads/{id}/tags",
        "/leads/{id}/opt-out",
        "/leads/{id}/reply",
    ],
)
def test_every_form_needs_its_csrf_token(owner, account, route):
    lead = LeadFactory(account=account, name="Untouched", last_inbound_at=timezone.now())
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    data = {**LEAD_FORM, "ids": [str(lead.pk)], "action": "opt_out", "type": "note", "tags": "x", "message": "hi"}
    response = client.post(route.format(id=lead.pk), data)
    assert response.status_code == 403
    lead.refresh_from_db()
    assert (lead.name, lead.is_opted_out, lead.tags.count(), lead.messages.count()) == ("Untouched", False, 0, 0)
    assert Lead.objects.count() == 1


def test_forms_carry_a_csrf_token(owner_web, account):
    lead = LeadFactory(account=account)
    LeadFactory(account=account)
    for path in ("/leads", "/leads/new", f"/leads/{lead.pk}", f"/leads/{lead.pk}/edit"):
        body = owner_web.get(path).content.decode()
        assert body.count('method="post"') == body.count('name="csrfmiddlewaretoken"'), path
