"""The Heroshhi document's lead routes, as a client uses them: list (filters,
pagination, order, a constant number of queries), get, create, PUT/PATCH, delete, the
three bulk routes and engagements. Every write is checked in the database too."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from accounts.tests.factories import UserFactory
from leads.models import Engagement, Lead, Tag
from leads.tests.factories import EngagementFactory, LeadFactory, TagFactory

LEADS = "/api/leads"


def lead_url(lead_id) -> str:
    return f"{LEADS}/{lead_id}"


@pytest.fixture(autouse=True)
def _generous_rate_limits_and_fast_hashing(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "100000/15m", "auth": "1000/15m"}
    # Users are made by the dozen here; real password hashing is slow on purpose.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def assert_invalid(response, *fields: str) -> dict:
    """A 400 VALIDATION_ERROR in the envelope, naming each of ``fields``."""
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["success"] is False
    assert body["error"] == "VALIDATION_ERROR"
    assert body["message"]
    for field in fields:
        assert field in body.get("errors", {}), body
    return body


def ids_of(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["data"]]


def listed(client, **params) -> list[str]:
    return ids_of(client.get(LEADS, params))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# --- List: pagination and order --------------------------------------------------------


def test_list_paginates_with_page_limit_total_and_pages(account, owner_client):
    base = at("2026-01-01T10:00:00+00:00")
    leads = [LeadFactory(account=account, created_at=base + timedelta(minutes=i)) for i in range(7)]
    newest_first = [str(lead.pk) for lead in reversed(leads)]

    first = owner_client.get(LEADS, {"page": 1, "limit": 3})
    assert first.status_code == 200
    body = first.json()
    assert body["success"] is True
    assert body["pagination"] == {"page": 1, "limit": 3, "total": 7, "pages": 3}
    assert [row["id"] for row in body["data"]] == newest_first[:3]

    second = owner_client.get(LEADS, {"page": 2, "limit": 3}).json()
    assert [row["id"] for row in second["data"]] == newest_first[3:6]
    assert second["pagination"] == {"page": 2, "limit": 3, "total": 7, "pages": 3}

    last = owner_client.get(LEADS, {"page": 3, "limit": 3}).json()
    assert [row["id"] for row in last["data"]] == newest_first[6:]

    past_the_end = owner_client.get(LEADS, {"page": 4, "limit": 3})
    assert past_the_end.status_code == 200
    assert past_the_end.json()["data"] == []
    assert past_the_end.json()["pagination"]["total"] == 7


def test_list_defaults_to_20_per_page_and_caps_the_limit_at_200(account, owner_client):
    LeadFactory.create_batch(23, account=account)

    default = owner_client.get(LEADS).json()
    assert len(default["data"]) == 20
    assert default["pagination"] == {"page": 1, "limit": 20, "total": 23, "pages": 2}

    capped = owner_client.get(LEADS, {"limit": 5000}).json()
    assert capped["pagination"]["limit"] == 200
    assert len(capped["data"]) == 23


def test_list_is_newest_first_whatever_the_insertion_order(account, owner_client):
    middle = LeadFactory(account=account, created_at=at("2026-02-02T12:00:00+00:00"))
    newest = LeadFactory(account=account, created_at=at("2026-02-03T12:00:00+00:00"))
    oldest = LeadFactory(account=account, created_at=at("2026-02-01T12:00:00+00:00"))

    assert listed(owner_client) == [str(newest.pk), str(middle.pk), str(oldest.pk)]


# --- List: filters ---------------------------------------------------------------------


def test_filter_by_status_and_segment(account, owner_client):
    hot_contacted = LeadFactory(account=account, status="contacted", segment="hot")
    cold_contacted = LeadFactory(account=account, status="contacted", segment="cold")
    hot_pending = LeadFactory(account=account, status="pending", segment="hot")
    LeadFactory(account=account, status="lost", segment="")

    assert set(listed(owner_client, status="contacted")) == {str(hot_contacted.pk), str(cold_contacted.pk)}
    assert set(listed(owner_client, segment="hot")) == {str(hot_contacted.pk), str(hot_pending.pk)}
    assert listed(owner_client, status="contacted", segment="hot") == [str(hot_contacted.pk)]
    assert listed(owner_client, status="converted") == []


def test_filter_by_source_ignores_case(account, owner_client):
    website = LeadFactory(account=account, source="Website Form")
    LeadFactory(account=account, source="Facebook Ads")
    LeadFactory(account=account, source="")

    assert listed(owner_client, source="website form") == [str(website.pk)]
    assert listed(owner_client, source="WEBSITE FORM") == [str(website.pk)]
    assert listed(owner_client, source="Instagram") == []


def test_filter_by_assignee_id_me_and_unassigned(account, owner, agent, owner_client, agent_client):
    colleague = UserFactory(account=account, role=User.Role.AGENT)
    mine = LeadFactory(account=account, assigned_to=agent)
    owners = LeadFactory(account=account, assigned_to=owner)
    colleagues = LeadFactory(account=account, assigned_to=colleague)
    nobodys = LeadFactory(account=account, assigned_to=None)

    assert listed(owner_client, assignedTo=str(agent.pk)) == [str(mine.pk)]
    assert listed(owner_client, assignedTo=str(colleague.pk)) == [str(colleagues.pk)]
    assert listed(owner_client, assignedTo="me") == [str(owners.pk)]
    assert listed(owner_client, assignedTo="unassigned") == [str(nobodys.pk)]
    assert listed(agent_client, assignedTo="me") == [str(mine.pk)]
    assert listed(agent_client, assignedTo="unassigned") == [str(nobodys.pk)]
    # An agent filtering on a colleague sees nothing of theirs (only their own and unassigned exist for them).
    assert listed(agent_client, assignedTo=str(colleague.pk)) == []


def test_filter_by_tag_id_and_name(account, owner_client):
    vip = TagFactory(account=account, name="VIP")
    delhi = TagFactory(account=account, name="Delhi")
    both = LeadFactory(account=account, tags=[vip, delhi])
    only_vip = LeadFactory(account=account, tags=[vip])
    LeadFactory(account=account, tags=[delhi])
    LeadFactory(account=account)

    assert set(listed(owner_client, tag=str(vip.pk))) == {str(both.pk), str(only_vip.pk)}
    assert set(listed(owner_client, tag="VIP")) == {str(both.pk), str(only_vip.pk)}
    assert set(listed(owner_client, tag="vip")) == {str(both.pk), str(only_vip.pk)}
    assert listed(owner_client, tag="VIP", search=both.name) == [str(both.pk)]


def test_filter_by_opt_out(account, owner_client):
    out = LeadFactory(account=account, is_opted_out=True)
    in_ = LeadFactory(account=account, is_opted_out=False)

    assert listed(owner_client, isOptedOut="true") == [str(out.pk)]
    assert listed(owner_client, isOptedOut="false") == [str(in_.pk)]
    assert set(listed(owner_client)) == {str(out.pk), str(in_.pk)}


@pytest.fixture
def kolkata_day_leads(account):
    """Four leads around the account's calendar day 2026-03-10 in Asia/Kolkata (UTC+5:30)."""
    account.time_zone = "Asia/Kolkata"
    account.save()
    return {
        "before": LeadFactory(account=account, created_at=at("2026-03-09T23:59:59+05:30")),
        "first": LeadFactory(account=account, created_at=at("2026-03-10T00:00:00+05:30")),
        "last": LeadFactory(account=account, created_at=at("2026-03-10T23:59:59+05:30")),
        "after": LeadFactory(account=account, created_at=at("2026-03-11T00:00:00+05:30")),
    }


def test_created_range_as_dates_is_whole_days_in_the_accounts_time_zone(kolkata_day_leads, owner_client):
    leads = {name: str(lead.pk) for name, lead in kolkata_day_leads.items()}

    assert set(listed(owner_client, createdFrom="2026-03-10", createdTo="2026-03-10")) == {
        leads["first"],
        leads["last"],
    }
    assert set(listed(owner_client, createdFrom="2026-03-10")) == {leads["first"], leads["last"], leads["after"]}
    assert set(listed(owner_client, createdTo="2026-03-10")) == {leads["before"], leads["first"], leads["last"]}
    assert listed(owner_client, createdFrom="2026-03-12") == []


def test_created_range_as_date_times_is_exact(kolkata_day_leads, owner_client):
    leads = {name: str(lead.pk) for name, lead in kolkata_day_leads.items()}

    # With an offset: exactly that instant, both ends inclusive.
    assert set(listed(owner_client, createdFrom="2026-03-10T00:00:00+05:30", createdTo="2026-03-10T18:29:59Z")) == {
        leads["first"],
        leads["last"],
    }
    assert set(listed(owner_client, createdFrom="2026-03-10T00:00:01+05:30")) == {leads["last"], leads["after"]}
    assert set(listed(owner_client, createdTo="2026-03-10T23:59:58+05:30")) == {leads["before"], leads["first"]}
    # Without an offset: the account's local time.
    assert set(listed(owner_client, createdFrom="2026-03-10T00:00:00", createdTo="2026-03-10T23:59:59")) == {
        leads["first"],
        leads["last"],
    }


def test_search_matches_name_email_and_phone_digits(account, owner_client):
    priya = LeadFactory(account=account, name="Priya Sharma", email="priya@sharma.in", phone="+919876543210")
    rahul = LeadFactory(account=account, name="Rahul Verma", email="rahul@verma.in", phone="+919812345678")

    assert listed(owner_client, search="priya") == [str(priya.pk)]
    assert listed(owner_client, search="SHARMA") == [str(priya.pk)]
    assert listed(owner_client, search="verma.in") == [str(rahul.pk)]
    assert listed(owner_client, search="98765") == [str(priya.pk)]
    assert listed(owner_client, search="+91 98765") == [str(priya.pk)]
    assert listed(owner_client, search="98765 43210") == [str(priya.pk)]
    assert listed(owner_client, search="+91 98123-45678") == [str(rahul.pk)]
    assert set(listed(owner_client, search="+91 98")) == {str(priya.pk), str(rahul.pk)}
    assert listed(owner_client, search="nobody") == []


def test_filters_combine(account, owner, agent, owner_client):
    vip = TagFactory(account=account, name="VIP")
    match = LeadFactory(
        account=account, status="qualified", segment="hot", source="Referral", assigned_to=agent, tags=[vip]
    )
    LeadFactory(account=account, status="qualified", segment="hot", source="Referral", assigned_to=owner, tags=[vip])
    LeadFactory(account=account, status="qualified", segment="warm", source="Referral", assigned_to=agent, tags=[vip])
    LeadFactory(account=account, status="qualified", segment="hot", source="Referral", assigned_to=agent)
    LeadFactory(
        account=account,
        status="qualified",
        segment="hot",
        source="Referral",
        assigned_to=agent,
        tags=[vip],
        is_opted_out=True,
    )

    response = owner_client.get(
        LEADS,
        {
            "status": "qualified",
            "segment": "hot",
            "source": "referral",
            "assignedTo": str(agent.pk),
            "tag": "VIP",
            "isOptedOut": "false",
        },
    )
    assert ids_of(response) == [str(match.pk)]
    assert response.json()["pagination"]["total"] == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "nope"}, "status"),
        ({"segment": "boiling"}, "segment"),
        ({"createdFrom": "garbage"}, "createdFrom"),
        ({"createdTo": "2026-13-45"}, "createdTo"),
        ({"createdFrom": "2026-03-10T25:00"}, "createdFrom"),
        ({"isOptedOut": "maybe"}, "isOptedOut"),
        ({"page": "0"}, "page"),
        ({"page": "-1"}, "page"),
        ({"page": "abc"}, "page"),
        ({"limit": "0"}, "limit"),
        ({"assignedTo": "not-a-user"}, "assignedTo"),
        ({"assignedTo": str(uuid.uuid4())}, "assignedTo"),
        ({"tag": "no such tag"}, "tag"),
        ({"tag": "987654"}, "tag"),
    ],
)
def test_bad_filter_values_are_validation_errors(account, owner_client, params, field):
    LeadFactory(account=account)
    assert_invalid(owner_client.get(LEADS, params), field)


def test_filter_values_naming_another_accounts_user_or_tag_are_refused(account, owner_client, other_account, outsider):
    LeadFactory(account=account)
    foreign_tag = TagFactory(account=other_account, name="Globex only")
    LeadFactory(account=other_account, assigned_to=outsider, tags=[foreign_tag])

    assert_invalid(owner_client.get(LEADS, {"assignedTo": str(outsider.pk)}), "assignedTo")
    assert_invalid(owner_client.get(LEADS, {"tag": str(foreign_tag.pk)}), "tag")
    assert_invalid(owner_client.get(LEADS, {"tag": "Globex only"}), "tag")


def test_list_query_count_does_not_grow_with_the_page(account, owner, agent, owner_client):
    tags = [TagFactory(account=account, name=f"T{i}") for i in range(3)]
    for i in range(60):
        LeadFactory(account=account, assigned_to=owner if i % 2 else agent, tags=tags[: 1 + i % 3])

    owner_client.get(LEADS, {"limit": 1})  # warm up the rate-limit counter's row
    with CaptureQueriesContext(connection) as small:
        small_page = owner_client.get(LEADS, {"limit": 5})
    with CaptureQueriesContext(connection) as large:
        large_page = owner_client.get(LEADS, {"limit": 50})

    assert len(small_page.json()["data"]) == 5
    rows = large_page.json()["data"]
    assert len(rows) == 50
    assert all(row["tags"] and row["assignedToName"] for row in rows)
    assert len(small) == len(large), [q["sql"] for q in large.captured_queries]


# --- Get -------------------------------------------------------------------------------


LEAD_FIELDS = {
    "id",
    "name",
    "phone",
    "email",
    "source",
    "inquiry",
    "segment",
    "status",
    "assignedTo",
    "assignedToName",
    "isOptedOut",
    "optedOutAt",
    "optOutReason",
    "tags",
    "notes",
    "lastInboundAt",
    "lastOutboundAt",
    "lastMessageAt",
    "createdAt",
    "updatedAt",
}


def test_get_answers_the_lead_in_the_documents_shape(account, agent, owner_client):
    vip = TagFactory(account=account, name="VIP", color="#ff4444")
    lead = LeadFactory(
        account=account,
        name="Priya Sharma",
        phone="+919876543210",
        email="priya@sharma.in",
        source="Website Form",
        inquiry="Product inquiry",
        segment="hot",
        status="contacted",
        assigned_to=agent,
        notes="Call after 6",
        tags=[vip],
    )
    old = EngagementFactory(lead=lead, type="call", at=at("2026-01-01T10:00:00+00:00"))
    new = EngagementFactory(lead=lead, type="meeting", at=at("2026-01-03T10:00:00+00:00"))
    middle = EngagementFactory(lead=lead, type="email", at=at("2026-01-02T10:00:00+00:00"))

    response = owner_client.get(lead_url(lead.pk))

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert set(data) == LEAD_FIELDS | {"engagements"}
    assert data["id"] == str(lead.pk)
    assert data["name"] == "Priya Sharma"
    assert data["phone"] == "919876543210"
    assert data["email"] == "priya@sharma.in"
    assert data["source"] == "Website Form"
    assert data["inquiry"] == "Product inquiry"
    assert data["segment"] == "hot"
    assert data["status"] == "contacted"
    assert data["assignedTo"] == str(agent.pk)
    assert data["assignedToName"] == "Aditya Agent"
    assert data["isOptedOut"] is False
    assert data["optedOutAt"] is None
    assert data["notes"] == "Call after 6"
    assert data["tags"] == [{"id": vip.pk, "name": "VIP", "color": "#ff4444"}]
    assert [e["id"] for e in data["engagements"]] == [new.pk, middle.pk, old.pk]
    assert [e["type"] for e in data["engagements"]] == ["meeting", "email", "call"]


def test_get_an_unknown_lead_is_not_found(owner_client):
    response = owner_client.get(lead_url(uuid.uuid4()))
    assert response.status_code == 404
    assert response.json()["error"] == "NOT_FOUND"
    assert response.json()["success"] is False


# --- Create ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "9876543210",
        "09876543210",
        "919876543210",
        "+919876543210",
        "+91 98765 43210",
        "0091 98765 43210",
        "98765-43210",
    ],
)
def test_create_stores_the_phone_in_e164_and_shows_digits(account, owner, owner_client, written):
    response = owner_client.post(LEADS, {"name": "Priya", "phone": written}, format="json")

    assert response.status_code == 201, response.content
    data = response.json()["data"]
    assert data["phone"] == "919876543210"
    assert data["status"] == "pending"
    lead = Lead.objects.get(pk=data["id"])
    assert lead.phone == "+919876543210"
    assert lead.account_id == account.pk
    assert lead.name == "Priya"


def test_create_with_every_field(account, agent, owner_client):
    response = owner_client.post(
        LEADS,
        {
            "name": "Priya Sharma",
            "phone": "919876543210",
            "email": "priya@sharma.in",
            "source": "Website Form",
            "inquiry": "Wants a demo",
            "segment": "warm",
            "status": "contacted",
            "assignedTo": str(agent.pk),
            "notes": "Speaks Hindi",
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["success"] is True
    data = response.json()["data"]
    assert set(data) == LEAD_FIELDS | {"engagements"}
    assert data["assignedTo"] == str(agent.pk)
    lead = Lead.objects.get(pk=data["id"])
    assert (lead.email, lead.source, lead.inquiry, lead.segment, lead.status, lead.assigned_to_id, lead.notes) == (
        "priya@sharma.in",
        "Website Form",
        "Wants a demo",
        "warm",
        "contacted",
        agent.pk,
        "Speaks Hindi",
    )


def test_create_uses_the_accounts_default_country(account, owner_client):
    account.default_country = "US"
    account.save()

    response = owner_client.post(LEADS, {"name": "Sam", "phone": "4155552671"}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["data"]["phone"] == "14155552671"
    assert Lead.objects.get(account=account).phone == "+14155552671"


@pytest.mark.parametrize("again", ["+919876543210", "9876543210", "0091 98765 43210", "(098765) 43210"])
def test_a_duplicate_phone_in_any_format_is_refused(account, owner_client, again):
    LeadFactory(account=account, phone="+919876543210")

    response = owner_client.post(LEADS, {"name": "Again", "phone": again}, format="json")

    assert_invalid(response, "phone")
    assert Lead.objects.filter(account=account).count() == 1


def test_the_same_phone_in_another_account_is_fine(account, owner_client, other_account):
    LeadFactory(account=other_account, phone="+919876543210")

    response = owner_client.post(LEADS, {"name": "Priya", "phone": "9876543210"}, format="json")

    assert response.status_code == 201
    assert Lead.objects.filter(phone="+919876543210").count() == 2


@pytest.mark.parametrize("phone", ["12345", "garbage", "+91 12", "0000000000", ""])
def test_an_invalid_phone_is_refused(account, owner_client, phone):
    response = owner_client.post(LEADS, {"name": "Priya", "phone": phone}, format="json")

    assert_invalid(response, "phone")
    assert not Lead.objects.exists()


@pytest.mark.parametrize(("body", "field"), [({"phone": "9876543210"}, "name"), ({"name": "Priya"}, "phone")])
def test_name_and_phone_are_required(owner_client, body, field):
    assert_invalid(owner_client.post(LEADS, body, format="json"), field)
    assert not Lead.objects.exists()


def test_tags_by_name_are_created_once_and_shared(account, owner_client):
    first = owner_client.post(LEADS, {"name": "A", "phone": "9876543210", "tags": ["VIP", "Delhi"]}, format="json")
    second = owner_client.post(LEADS, {"name": "B", "phone": "9876543211", "tags": ["vip"]}, format="json")

    assert first.status_code == 201 and second.status_code == 201, (first.content, second.content)
    assert Tag.objects.filter(account=account).count() == 2
    vip = Tag.objects.get(account=account, name="VIP")
    assert {tag["name"] for tag in first.json()["data"]["tags"]} == {"VIP", "Delhi"}
    assert second.json()["data"]["tags"] == [{"id": vip.pk, "name": "VIP", "color": vip.color}]
    assert set(vip.leads.values_list("name", flat=True)) == {"A", "B"}


def test_tags_by_id(account, owner_client):
    vip = TagFactory(account=account, name="VIP")

    response = owner_client.post(LEADS, {"name": "A", "phone": "9876543210", "tags": [vip.pk]}, format="json")

    assert response.status_code == 201
    assert [tag["id"] for tag in response.json()["data"]["tags"]] == [vip.pk]
    assert list(Lead.objects.get().tags.all()) == [vip]
    assert Tag.objects.count() == 1


def test_an_unknown_or_foreign_tag_id_refuses_the_whole_create(account, owner_client, other_account):
    foreign = TagFactory(account=other_account, name="Foreign")
    mine = TagFactory(account=account, name="Mine")

    for tags in ([987654], [foreign.pk], [mine.pk, foreign.pk], ["New name", foreign.pk]):
        response = owner_client.post(LEADS, {"name": "A", "phone": "9876543210", "tags": tags}, format="json")
        assert_invalid(response, "tags")

    assert not Lead.objects.exists()
    assert not foreign.leads.exists()
    assert set(Tag.objects.values_list("name", flat=True)) == {"Foreign", "Mine"}


def test_an_assignee_of_another_account_is_refused(owner_client, outsider):
    response = owner_client.post(
        LEADS, {"name": "A", "phone": "9876543210", "assignedTo": str(outsider.pk)}, format="json"
    )

    assert_invalid(response, "assignedTo")
    assert not Lead.objects.exists()


def test_agents_create_leads_for_themselves_or_nobody(owner, agent, agent_client):
    own = agent_client.post(LEADS, {"name": "A", "phone": "9876543210", "assignedTo": str(agent.pk)}, format="json")
    nobody = agent_client.post(LEADS, {"name": "B", "phone": "9876543211"}, format="json")
    others = agent_client.post(LEADS, {"name": "C", "phone": "9876543212", "assignedTo": str(owner.pk)}, format="json")

    assert own.status_code == 201 and Lead.objects.get(name="A").assigned_to == agent
    assert nobody.status_code == 201 and Lead.objects.get(name="B").assigned_to is None
    assert_invalid(others, "assignedTo")
    assert not Lead.objects.filter(name="C").exists()


def test_create_opted_out_records_when(owner_client):
    response = owner_client.post(LEADS, {"name": "A", "phone": "9876543210", "isOptedOut": True}, format="json")

    assert response.status_code == 201
    assert response.json()["data"]["isOptedOut"] is True
    assert response.json()["data"]["optedOutAt"]
    lead = Lead.objects.get()
    assert lead.is_opted_out is True and lead.opted_out_at is not None


# --- Update ----------------------------------------------------------------------------


def test_put_replaces_the_fields_sent(account, owner_client):
    lead = LeadFactory(account=account, name="Old", phone="+919876543210", status="pending")

    response = owner_client.put(
        lead_url(lead.pk),
        {"name": "New Name", "phone": "+91 98123 45678", "status": "qualified", "segment": "hot"},
        format="json",
    )

    assert response.status_code == 200, response.content
    data = response.json()["data"]
    assert (data["name"], data["phone"], data["status"], data["segment"]) == (
        "New Name",
        "919812345678",
        "qualified",
        "hot",
    )
    lead.refresh_from_db()
    assert (lead.name, lead.phone, lead.status, lead.segment) == ("New Name", "+919812345678", "qualified", "hot")


@pytest.mark.parametrize(
    ("body", "missing"),
    [({"status": "contacted"}, {"name", "phone"}), ({"name": "X"}, {"phone"}), ({"phone": "9876543211"}, {"name"})],
)
def test_put_requires_name_and_phone(account, owner_client, body, missing):
    lead = LeadFactory(account=account, name="Old", status="pending")

    assert_invalid(owner_client.put(lead_url(lead.pk), body, format="json"), *missing)

    lead.refresh_from_db()
    assert (lead.name, lead.status) == ("Old", "pending")


def test_patch_changes_only_what_it_sends(account, agent, owner_client):
    lead = LeadFactory(account=account, name="Keep", phone="+919876543210", status="pending", notes="n", source="Ads")

    response = owner_client.patch(
        lead_url(lead.pk), {"status": "qualified", "assignedTo": str(agent.pk)}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["data"]["status"] == "qualified"
    lead.refresh_from_db()
    assert (lead.name, lead.phone, lead.status, lead.notes, lead.source, lead.assigned_to) == (
        "Keep",
        "+919876543210",
        "qualified",
        "n",
        "Ads",
        agent,
    )


def test_patch_can_unassign_and_clear_the_segment(account, agent, owner_client):
    lead = LeadFactory(account=account, assigned_to=agent, segment="hot")

    response = owner_client.patch(lead_url(lead.pk), {"assignedTo": None, "segment": None}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["data"]["assignedTo"] is None
    assert response.json()["data"]["segment"] is None
    lead.refresh_from_db()
    assert lead.assigned_to is None and lead.segment == ""


@pytest.mark.parametrize("method", ["put", "patch"])
def test_changing_the_phone_to_another_leads_phone_saves_nothing(account, owner_client, method):
    LeadFactory(account=account, phone="+919876543210")
    lead = LeadFactory(account=account, name="Mine", phone="+919812345678", status="pending")

    response = getattr(owner_client, method)(
        lead_url(lead.pk), {"name": "Renamed", "phone": "098765 43210", "status": "lost"}, format="json"
    )

    assert_invalid(response, "phone")
    lead.refresh_from_db()
    assert (lead.name, lead.phone, lead.status) == ("Mine", "+919812345678", "pending")


def test_patch_keeping_its_own_phone_in_another_format_is_fine(account, owner_client):
    lead = LeadFactory(account=account, phone="+919876543210")

    response = owner_client.patch(lead_url(lead.pk), {"phone": "98765 43210", "name": "Same"}, format="json")

    assert response.status_code == 200, response.content
    lead.refresh_from_db()
    assert (lead.phone, lead.name) == ("+919876543210", "Same")


def test_opting_out_sets_the_time_and_opting_in_clears_it(account, owner_client):
    lead = LeadFactory(account=account)

    out = owner_client.patch(lead_url(lead.pk), {"isOptedOut": True}, format="json")
    assert out.status_code == 200
    assert out.json()["data"]["isOptedOut"] is True
    assert out.json()["data"]["optedOutAt"]
    lead.refresh_from_db()
    assert lead.is_opted_out is True
    assert lead.opted_out_at is not None

    back = owner_client.patch(lead_url(lead.pk), {"isOptedOut": False}, format="json")
    assert back.status_code == 200
    assert back.json()["data"]["isOptedOut"] is False
    assert back.json()["data"]["optedOutAt"] is None
    lead.refresh_from_db()
    assert lead.is_opted_out is False
    assert lead.opted_out_at is None


def test_patch_tags_replaces_them(account, owner_client):
    old = TagFactory(account=account, name="Old")
    lead = LeadFactory(account=account, tags=[old])

    response = owner_client.patch(lead_url(lead.pk), {"tags": ["Fresh"]}, format="json")

    assert response.status_code == 200
    assert [tag["name"] for tag in response.json()["data"]["tags"]] == ["Fresh"]
    assert list(lead.tags.values_list("name", flat=True)) == ["Fresh"]


def test_agents_cannot_hand_a_lead_to_someone_else(account, owner, agent, agent_client):
    lead = LeadFactory(account=account, assigned_to=agent)

    assert_invalid(agent_client.patch(lead_url(lead.pk), {"assignedTo": str(owner.pk)}, format="json"), "assignedTo")
    lead.refresh_from_db()
    assert lead.assigned_to == agent

    released = agent_client.patch(lead_url(lead.pk), {"assignedTo": None}, format="json")
    assert released.status_code == 200
    lead.refresh_from_db()
    assert lead.assigned_to is None


# --- Delete ----------------------------------------------------------------------------


def test_admins_delete_a_lead_and_its_engagements(account, owner_client):
    lead = LeadFactory(account=account)
    EngagementFactory(lead=lead)
    kept = LeadFactory(account=account)

    response = owner_client.delete(lead_url(lead.pk))

    assert response.status_code == 200
    assert response.json()["success"] is True
    assert list(Lead.objects.values_list("pk", flat=True)) == [kept.pk]
    assert not Engagement.objects.exists()
    assert owner_client.get(lead_url(lead.pk)).status_code == 404
    assert owner_client.delete(lead_url(lead.pk)).status_code == 404


def test_agents_cannot_delete(account, agent, agent_client):
    lead = LeadFactory(account=account, assigned_to=agent)

    response = agent_client.delete(lead_url(lead.pk))

    assert response.status_code == 403
    assert response.json()["error"] == "PERMISSION_DENIED"
    assert Lead.objects.filter(pk=lead.pk).exists()


# --- Bulk ------------------------------------------------------------------------------


def _statements(queries, verb: str, table: str = "leads_lead") -> list[str]:
    return [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].lstrip().upper().startswith(verb)
        and (f'"{table}"' in q["sql"] or f" {table} " in q["sql"] or f"`{table}`" in q["sql"])
    ]


def test_bulk_update_sets_fields_in_one_statement(account, owner_client):
    chosen = LeadFactory.create_batch(3, account=account, status="pending", segment="cold")
    other = LeadFactory(account=account, status="pending", segment="cold")

    with CaptureQueriesContext(connection) as queries:
        response = owner_client.post(
            f"{LEADS}/bulk-update",
            {
                "ids": [str(lead.pk) for lead in chosen],
                "updates": {"status": "contacted", "segment": "hot", "source": "Expo"},
            },
            format="json",
        )

    assert response.status_code == 200, response.content
    assert response.json()["success"] is True
    assert response.json()["data"] == {"count": 3}
    assert len(_statements(queries, "UPDATE")) == 1, _statements(queries, "UPDATE")
    for lead in chosen:
        lead.refresh_from_db()
        assert (lead.status, lead.segment, lead.source) == ("contacted", "hot", "Expo")
    other.refresh_from_db()
    assert (other.status, other.segment) == ("pending", "cold")


def test_bulk_update_opt_out_records_when(account, owner_client):
    leads = LeadFactory.create_batch(2, account=account)

    response = owner_client.post(
        f"{LEADS}/bulk-update", {"ids": [str(x.pk) for x in leads], "updates": {"isOptedOut": True}}, format="json"
    )

    assert response.status_code == 200
    assert Lead.objects.filter(is_opted_out=True, opted_out_at__isnull=False).count() == 2

    owner_client.post(
        f"{LEADS}/bulk-update", {"ids": [str(x.pk) for x in leads], "updates": {"isOptedOut": False}}, format="json"
    )
    assert Lead.objects.filter(is_opted_out=False, opted_out_at__isnull=True).count() == 2


def test_bulk_update_with_an_id_of_another_account_changes_nothing(account, owner_client, other_account):
    mine = LeadFactory.create_batch(2, account=account, status="pending")
    foreign = LeadFactory(account=other_account, status="pending")

    response = owner_client.post(
        f"{LEADS}/bulk-update",
        {"ids": [*(str(x.pk) for x in mine), str(foreign.pk)], "updates": {"status": "lost"}},
        format="json",
    )

    assert_invalid(response, "ids")
    assert str(foreign.pk) in str(response.json()["errors"]["ids"])
    assert set(Lead.objects.values_list("status", flat=True)) == {"pending"}


@pytest.mark.parametrize(
    "updates",
    [{}, {"name": "Renamed"}, {"status": "lost", "name": "Renamed"}, {"assignedTo": None}, {"status": "won"}],
)
def test_bulk_update_refuses_unknown_fields_or_no_updates(account, owner_client, updates):
    lead = LeadFactory(account=account, name="Keep", status="pending")

    response = owner_client.post(f"{LEADS}/bulk-update", {"ids": [str(lead.pk)], "updates": updates}, format="json")

    assert_invalid(response)
    lead.refresh_from_db()
    assert (lead.name, lead.status) == ("Keep", "pending")


def test_bulk_update_without_updates_is_refused(account, owner_client):
    lead = LeadFactory(account=account)
    assert_invalid(owner_client.post(f"{LEADS}/bulk-update", {"ids": [str(lead.pk)]}, format="json"), "updates")


@pytest.mark.parametrize("route", ["bulk-update", "bulk-assign", "bulk-delete"])
def test_bulk_ids_must_be_between_1_and_5000(account, owner, owner_client, route):
    lead = LeadFactory(account=account, status="pending")
    extra = {"bulk-update": {"updates": {"status": "lost"}}, "bulk-assign": {"assignedTo": str(owner.pk)}}.get(
        route, {}
    )

    assert_invalid(owner_client.post(f"{LEADS}/{route}", {"ids": [], **extra}, format="json"), "ids")
    assert_invalid(owner_client.post(f"{LEADS}/{route}", {**extra}, format="json"), "ids")
    too_many = [str(lead.pk)] + [str(uuid.uuid4()) for _ in range(5000)]
    assert_invalid(owner_client.post(f"{LEADS}/{route}", {"ids": too_many, **extra}, format="json"), "ids")
    assert_invalid(owner_client.post(f"{LEADS}/{route}", {"ids": ["not-a-uuid"], **extra}, format="json"), "ids")

    lead.refresh_from_db()
    assert lead.status == "pending" and lead.assigned_to is None


def test_bulk_assign_and_unassign(account, owner, agent, owner_client):
    leads = LeadFactory.create_batch(3, account=account)
    other = LeadFactory(account=account)
    ids = [str(x.pk) for x in leads]

    with CaptureQueriesContext(connection) as queries:
        response = owner_client.post(f"{LEADS}/bulk-assign", {"ids": ids, "assignedTo": str(agent.pk)}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["data"] == {"count": 3}
    assert len(_statements(queries, "UPDATE")) == 1
    assert Lead.objects.filter(assigned_to=agent).count() == 3
    other.refresh_from_db()
    assert other.assigned_to is None

    response = owner_client.post(f"{LEADS}/bulk-assign", {"ids": ids[:2], "assignedTo": None}, format="json")
    assert response.json()["data"] == {"count": 2}
    assert Lead.objects.filter(assigned_to=agent).count() == 1


def test_bulk_assign_refuses_foreign_ids_and_foreign_assignees(account, owner_client, other_account, outsider):
    mine = LeadFactory(account=account)
    foreign = LeadFactory(account=other_account)

    assert_invalid(
        owner_client.post(
            f"{LEADS}/bulk-assign", {"ids": [str(mine.pk), str(foreign.pk)], "assignedTo": None}, format="json"
        ),
        "ids",
    )
    assert_invalid(
        owner_client.post(
            f"{LEADS}/bulk-assign", {"ids": [str(mine.pk)], "assignedTo": str(outsider.pk)}, format="json"
        ),
        "assignedTo",
    )
    mine.refresh_from_db()
    foreign.refresh_from_db()
    assert mine.assigned_to is None and foreign.assigned_to is None


def test_agents_bulk_assign_only_to_themselves(account, owner, agent, agent_client):
    leads = LeadFactory.create_batch(2, account=account)
    ids = [str(x.pk) for x in leads]

    assert_invalid(
        agent_client.post(f"{LEADS}/bulk-assign", {"ids": ids, "assignedTo": str(owner.pk)}, format="json"),
        "assignedTo",
    )
    assert not Lead.objects.filter(assigned_to__isnull=False).exists()

    response = agent_client.post(f"{LEADS}/bulk-assign", {"ids": ids, "assignedTo": str(agent.pk)}, format="json")
    assert response.status_code == 200
    assert Lead.objects.filter(assigned_to=agent).count() == 2


def test_bulk_delete_deletes_the_named_leads(account, owner_client):
    doomed = LeadFactory.create_batch(3, account=account)
    for lead in doomed:
        EngagementFactory(lead=lead)
    kept = LeadFactory(account=account)

    with CaptureQueriesContext(connection) as queries:
        response = owner_client.post(f"{LEADS}/bulk-delete", {"ids": [str(x.pk) for x in doomed]}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["data"] == {"count": 3}
    assert len(_statements(queries, "DELETE")) == 1
    assert list(Lead.objects.values_list("pk", flat=True)) == [kept.pk]
    assert not Engagement.objects.exists()


def test_bulk_delete_is_all_or_nothing(account, owner_client, other_account):
    mine = LeadFactory.create_batch(2, account=account)
    foreign = LeadFactory(account=other_account)

    response = owner_client.post(
        f"{LEADS}/bulk-delete", {"ids": [str(mine[0].pk), str(foreign.pk), str(mine[1].pk)]}, format="json"
    )

    assert_invalid(response, "ids")
    assert Lead.objects.count() == 3


def test_agents_cannot_bulk_delete(account, agent, agent_client):
    lead = LeadFactory(account=account, assigned_to=agent)

    response = agent_client.post(f"{LEADS}/bulk-delete", {"ids": [str(lead.pk)]}, format="json")

    assert response.status_code == 403
    assert response.json()["error"] == "PERMISSION_DENIED"
    assert Lead.objects.filter(pk=lead.pk).exists()


# --- Engagements -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["call", "email", "meeting", "note", "whatsapp"])
def test_log_an_engagement_of_each_type(account, owner, owner_client, kind):
    lead = LeadFactory(account=account)

    response = owner_client.post(
        f"{lead_url(lead.pk)}/engagement", {"type": kind, "notes": "Talked about pricing"}, format="json"
    )

    assert response.status_code == 201, response.content
    data = response.json()["data"]
    assert data["type"] == kind
    assert data["notes"] == "Talked about pricing"
    assert data["userId"] == str(owner.pk)
    engagement = Engagement.objects.get(lead=lead)
    assert (engagement.type, engagement.user) == (kind, owner)
    detail = owner_client.get(lead_url(lead.pk)).json()["data"]
    assert [e["id"] for e in detail["engagements"]] == [engagement.pk]


def test_an_engagement_at_a_given_time(account, owner_client):
    lead = LeadFactory(account=account)

    response = owner_client.post(
        f"{lead_url(lead.pk)}/engagement", {"type": "call", "at": "2026-01-05T09:30:00Z"}, format="json"
    )

    assert response.status_code == 201
    assert Engagement.objects.get().at == at("2026-01-05T09:30:00+00:00")


@pytest.mark.parametrize("body", [{"type": "lunch"}, {}, {"type": "call", "at": "yesterday"}])
def test_a_bad_engagement_is_refused(account, owner_client, body):
    lead = LeadFactory(account=account)

    response = owner_client.post(f"{lead_url(lead.pk)}/engagement", body, format="json")

    assert_invalid(response, *(["type"] if body.get("type") != "call" else ["at"]))
    assert not Engagement.objects.exists()


def test_engagements_are_listed_newest_first_with_pagination(account, owner_client):
    lead = LeadFactory(account=account)
    base = at("2026-01-01T10:00:00+00:00")
    made = [EngagementFactory(lead=lead, at=base + timedelta(hours=h)) for h in (2, 0, 3, 1)]
    EngagementFactory(lead=LeadFactory(account=account))  # another lead's
    newest_first = [e.pk for e in sorted(made, key=lambda e: e.at, reverse=True)]

    first = owner_client.get(f"{lead_url(lead.pk)}/engagement", {"limit": 3})
    second = owner_client.get(f"{lead_url(lead.pk)}/engagement", {"limit": 3, "page": 2})

    assert first.status_code == 200
    assert [e["id"] for e in first.json()["data"]] == newest_first[:3]
    assert first.json()["pagination"] == {"page": 1, "limit": 3, "total": 4, "pages": 2}
    assert [e["id"] for e in second.json()["data"]] == newest_first[3:]


# --- Slashes ---------------------------------------------------------------------------


def test_routes_answer_with_and_without_the_trailing_slash(account, owner_client):
    lead = LeadFactory(account=account, status="pending")

    assert ids_of(owner_client.get(f"{LEADS}/")) == ids_of(owner_client.get(LEADS)) == [str(lead.pk)]
    created = owner_client.post(f"{LEADS}/", {"name": "Slash", "phone": "9876543299"}, format="json")
    assert created.status_code == 201
    assert Lead.objects.filter(name="Slash").exists()

    patched = owner_client.patch(f"{lead_url(lead.pk)}/", {"status": "lost"}, format="json")
    assert patched.status_code == 200

    bulk = owner_client.post(
        f"{LEADS}/bulk-update/", {"ids": [str(lead.pk)], "updates": {"status": "qualified"}}, format="json"
    )
    assert bulk.status_code == 200
    lead.refresh_from_db()
    assert lead.status == "qualified"


@pytest.mark.parametrize("query", ["createdFrom=0001-01-01", "createdTo=9999-12-31", "createdTo=0001-01-02T00:00"])
def test_dates_beyond_the_calendar_edges_are_refused_not_500(owner_client, query):
    answer = owner_client.get(f"/api/leads?{query}")

    assert answer.status_code == 400
    assert answer.json()["error"] == "VALIDATION_ERROR"
