"""Tags: /api/tags (list with lead counts, create, get, put, patch, delete) and tag
assignment on leads (/api/leads/:id/tags, /api/leads/:id/tags/:tagId), scoped to
the account; tags show on leads and on HeyDoc's contacts."""

import pytest

from leads.models import Lead, Tag

pytestmark = pytest.mark.django_db

DEFAULT_COLOR = "#6b7280"


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings):
    settings.RATE_LIMITS = {
        **settings.RATE_LIMITS,
        "standard": "100000/15m",
        "auth": "1000/15m",
        "webhook": "100000/15m",
    }


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Users are created in most tests; real password hashing is slow on purpose."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


_phones = iter(range(10_000_000))


def make_lead(account, name: str = "", **fields) -> Lead:
    n = next(_phones)
    phone = fields.pop("phone", f"+9198{n:08d}")
    return Lead.objects.create(account=account, name=name or f"Lead {n}", phone=phone, **fields)


def make_tag(account, name: str, color: str = "#ff4444") -> Tag:
    return Tag.objects.create(account=account, name=name, color=color)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is False
    assert body["error"] == code
    return body


def tag_ids(lead: Lead) -> set[int]:
    return set(lead.tags.values_list("pk", flat=True))


@pytest.fixture
def vip(account) -> Tag:
    return make_tag(account, "VIP", "#00aa00")


@pytest.fixture
def foreign_tag(other_account) -> Tag:
    return make_tag(other_account, "Theirs", "#000000")


# --- List --------------------------------------------------------------------------------


def test_the_list_has_every_tag_of_the_account_with_its_lead_count(owner_client, account, other_account):
    family = make_tag(account, "Family", "#ff4444")
    vip = make_tag(account, "VIP", "#00aa00")
    unused = make_tag(account, "Unused", "#123456")
    make_tag(other_account, "Globex only")
    leads = [make_lead(account) for _ in range(3)]
    for lead in leads:
        lead.tags.add(vip)
    leads[0].tags.add(family)
    foreign_lead = make_lead(other_account)
    foreign_lead.tags.add(make_tag(other_account, "VIP"))

    r = owner_client.get("/api/tags")

    assert r.status_code == 200, r.content
    body = r.json()
    assert body["success"] is True
    assert body["data"] == [
        {"id": family.pk, "name": "Family", "color": "#ff4444", "leadCount": 1},
        {"id": unused.pk, "name": "Unused", "color": "#123456", "leadCount": 0},
        {"id": vip.pk, "name": "VIP", "color": "#00aa00", "leadCount": 3},
    ]


@pytest.mark.parametrize("path", ["/api/tags", "/api/tags/"])
def test_the_list_answers_with_and_without_a_trailing_slash(agent_client, vip, path):
    r = agent_client.get(path)

    assert r.status_code == 200, r.content
    assert [t["name"] for t in r.json()["data"]] == ["VIP"]


def test_the_list_needs_a_login(api_client, vip):
    assert_error(api_client.get("/api/tags"), 401, "NOT_AUTHENTICATED")


# --- Create ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/tags", "/api/tags/"])
def test_create_a_tag(owner_client, account, path):
    r = owner_client.post(path, {"name": "Hot prospect", "color": "#FF4444"}, format="json")

    assert r.status_code == 201, r.content
    body = r.json()
    assert body["success"] is True
    data = body["data"]
    assert set(data) == {"id", "name", "color"}
    assert type(data["id"]) is int
    tag = Tag.objects.get(pk=data["id"])
    assert (tag.account, tag.name, tag.color) == (account, "Hot prospect", "#FF4444")
    assert (data["name"], data["color"]) == ("Hot prospect", "#FF4444")


def test_a_tag_without_a_color_gets_the_default(owner_client, account):
    r = owner_client.post("/api/tags", {"name": "Plain"}, format="json")

    assert r.status_code == 201, r.content
    assert r.json()["data"]["color"] == DEFAULT_COLOR
    assert Tag.objects.get(account=account, name="Plain").color == DEFAULT_COLOR


def test_an_agent_can_create_a_tag(agent_client, account):
    r = agent_client.post("/api/tags", {"name": "Callback"}, format="json")

    assert r.status_code == 201, r.content
    assert Tag.objects.filter(account=account, name="Callback").exists()


@pytest.mark.parametrize("name", ["VIP", "vip", "Vip", "  VIP  "])
def test_a_duplicate_name_is_refused_whatever_its_case(owner_client, account, vip, name):
    body = assert_error(owner_client.post("/api/tags", {"name": name}, format="json"), 400, "VALIDATION_ERROR")

    assert "name" in body["errors"]
    assert Tag.objects.filter(account=account).count() == 1


def test_the_same_name_in_another_account_is_fine(outsider_client, other_account, vip):
    r = outsider_client.post("/api/tags", {"name": "VIP"}, format="json")

    assert r.status_code == 201, r.content
    assert Tag.objects.filter(name="VIP").count() == 2
    assert Tag.objects.get(pk=r.json()["data"]["id"]).account == other_account


@pytest.mark.parametrize("color", ["red", "#ff44", "#gggggg", "ff4444", "#ff44441", "", 123])
def test_a_bad_color_is_refused(owner_client, account, color):
    body = assert_error(
        owner_client.post("/api/tags", {"name": "Colourful", "color": color}, format="json"), 400, "VALIDATION_ERROR"
    )

    assert "color" in body["errors"]
    assert not Tag.objects.exists()


@pytest.mark.parametrize("name", ["", "   ", "<b></b>", "x" * 51, None, ["VIP"]])
def test_a_bad_name_is_refused(owner_client, account, name):
    body = assert_error(owner_client.post("/api/tags", {"name": name}, format="json"), 400, "VALIDATION_ERROR")

    assert "name" in body["errors"]
    assert not Tag.objects.exists()


def test_html_is_stripped_from_a_tag_name(owner_client, account):
    r = owner_client.post("/api/tags", {"name": "<script>alert(1)</script><b>Hot</b> lead"}, format="json")

    assert r.status_code == 201, r.content
    assert r.json()["data"]["name"] == "Hot lead"
    assert Tag.objects.get(account=account).name == "Hot lead"


# --- Get, update -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/"])
def test_get_a_tag(agent_client, vip, suffix):
    r = agent_client.get(f"/api/tags/{vip.pk}{suffix}")

    assert r.status_code == 200, r.content
    assert r.json() == {"success": True, "data": {"id": vip.pk, "name": "VIP", "color": "#00aa00"}}


def test_a_missing_tag_is_not_found(owner_client, vip):
    assert_error(owner_client.get(f"/api/tags/{vip.pk + 1000}"), 404, "NOT_FOUND")


def test_another_accounts_tag_is_not_found(owner_client, foreign_tag):
    assert_error(owner_client.get(f"/api/tags/{foreign_tag.pk}"), 404, "NOT_FOUND")


def test_put_replaces_name_and_color(owner_client, vip):
    r = owner_client.put(f"/api/tags/{vip.pk}", {"name": "Gold", "color": "#ffd700"}, format="json")

    assert r.status_code == 200, r.content
    assert r.json()["data"] == {"id": vip.pk, "name": "Gold", "color": "#ffd700"}
    vip.refresh_from_db()
    assert (vip.name, vip.color) == ("Gold", "#ffd700")


def test_put_needs_the_name(owner_client, vip):
    body = assert_error(
        owner_client.put(f"/api/tags/{vip.pk}", {"color": "#ffd700"}, format="json"), 400, "VALIDATION_ERROR"
    )

    assert "name" in body["errors"]
    vip.refresh_from_db()
    assert (vip.name, vip.color) == ("VIP", "#00aa00")


def test_patch_changes_only_what_is_sent(owner_client, vip):
    r = owner_client.patch(f"/api/tags/{vip.pk}/", {"color": "#123abc"}, format="json")

    assert r.status_code == 200, r.content
    assert r.json()["data"] == {"id": vip.pk, "name": "VIP", "color": "#123abc"}
    vip.refresh_from_db()
    assert (vip.name, vip.color) == ("VIP", "#123abc")


def test_patch_can_change_the_case_of_its_own_name(owner_client, vip):
    r = owner_client.patch(f"/api/tags/{vip.pk}", {"name": "vip"}, format="json")

    assert r.status_code == 200, r.content
    vip.refresh_from_db()
    assert vip.name == "vip"


def test_renaming_onto_another_tags_name_is_refused(owner_client, account, vip):
    family = make_tag(account, "Family")

    body = assert_error(
        owner_client.patch(f"/api/tags/{family.pk}", {"name": "vIP"}, format="json"), 400, "VALIDATION_ERROR"
    )

    assert "name" in body["errors"]
    family.refresh_from_db()
    assert family.name == "Family"


def test_a_bad_color_on_update_is_refused(owner_client, vip):
    assert_error(owner_client.patch(f"/api/tags/{vip.pk}", {"color": "green"}, format="json"), 400, "VALIDATION_ERROR")

    vip.refresh_from_db()
    assert vip.color == "#00aa00"


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_another_accounts_tag_cannot_be_changed(owner_client, foreign_tag, method):
    r = getattr(owner_client, method)(
        f"/api/tags/{foreign_tag.pk}", {"name": "Mine now", "color": "#ffffff"}, format="json"
    )

    assert_error(r, 404, "NOT_FOUND")
    foreign_tag.refresh_from_db()
    assert (foreign_tag.name, foreign_tag.color) == ("Theirs", "#000000")


# --- Delete ------------------------------------------------------------------------------


def test_an_admin_deletes_a_tag_and_it_leaves_every_lead(owner_client, account, vip):
    family = make_tag(account, "Family")
    leads = [make_lead(account) for _ in range(2)]
    for lead in leads:
        lead.tags.add(vip, family)

    r = owner_client.delete(f"/api/tags/{vip.pk}")

    assert r.status_code == 200, r.content
    assert r.json()["success"] is True
    assert not Tag.objects.filter(pk=vip.pk).exists()
    for lead in leads:
        assert Lead.objects.filter(pk=lead.pk).exists()
        assert tag_ids(lead) == {family.pk}
    assert owner_client.get(f"/api/tags/{vip.pk}").status_code == 404


def test_an_agent_cannot_delete_a_tag(agent_client, account, vip):
    lead = make_lead(account)
    lead.tags.add(vip)

    assert_error(agent_client.delete(f"/api/tags/{vip.pk}"), 403, "PERMISSION_DENIED")

    assert Tag.objects.filter(pk=vip.pk).exists()
    assert tag_ids(lead) == {vip.pk}


# --- Tags on a lead ----------------------------------------------------------------------


def lead_tags_url(lead) -> str:
    return f"/api/leads/{lead.pk}/tags"


def test_add_tags_to_a_lead_by_name_creating_new_ones(owner_client, account, vip):
    lead = make_lead(account)

    r = owner_client.post(lead_tags_url(lead), {"tags": ["vip", "Follow-up"]}, format="json")

    assert r.status_code == 200, r.content
    body = r.json()
    assert body["success"] is True
    created = Tag.objects.get(account=account, name="Follow-up")
    assert created.color == DEFAULT_COLOR
    assert Tag.objects.filter(account=account).count() == 2  # "vip" is the existing VIP
    assert tag_ids(lead) == {vip.pk, created.pk}
    assert sorted(body["data"], key=lambda t: t["name"]) == [
        {"id": created.pk, "name": "Follow-up", "color": DEFAULT_COLOR},
        {"id": vip.pk, "name": "VIP", "color": "#00aa00"},
    ]


def test_add_tags_to_a_lead_by_id(owner_client, account, vip):
    family = make_tag(account, "Family")
    lead = make_lead(account)

    r = owner_client.post(lead_tags_url(lead) + "/", {"tags": [vip.pk, family.pk]}, format="json")

    assert r.status_code == 200, r.content
    assert tag_ids(lead) == {vip.pk, family.pk}
    assert {t["id"] for t in r.json()["data"]} == {vip.pk, family.pk}


def test_adding_keeps_the_tags_already_there(owner_client, account, vip):
    family = make_tag(account, "Family")
    lead = make_lead(account)
    lead.tags.add(family)

    r = owner_client.post(lead_tags_url(lead), {"tags": [vip.pk, "VIP", family.pk]}, format="json")

    assert r.status_code == 200, r.content
    assert tag_ids(lead) == {vip.pk, family.pk}
    assert sorted(t["id"] for t in r.json()["data"]) == sorted([vip.pk, family.pk])


def test_html_is_stripped_from_new_tag_names_on_a_lead(owner_client, account):
    lead = make_lead(account)

    r = owner_client.post(lead_tags_url(lead), {"tags": ["<i>Priority</i>"]}, format="json")

    assert r.status_code == 200, r.content
    assert [t.name for t in lead.tags.all()] == ["Priority"]


def test_an_agent_tags_a_lead_they_can_see(agent_client, account, agent, vip):
    lead = make_lead(account, assigned_to=agent)

    r = agent_client.post(lead_tags_url(lead), {"tags": [vip.pk]}, format="json")

    assert r.status_code == 200, r.content
    assert tag_ids(lead) == {vip.pk}


def test_an_agent_cannot_tag_someone_elses_lead(agent_client, account, owner, vip):
    lead = make_lead(account, assigned_to=owner)

    assert_error(agent_client.post(lead_tags_url(lead), {"tags": [vip.pk]}, format="json"), 404, "NOT_FOUND")
    assert tag_ids(lead) == set()


def test_another_accounts_tag_id_is_refused_and_nothing_changes(owner_client, account, vip, foreign_tag):
    lead = make_lead(account)

    r = owner_client.post(lead_tags_url(lead), {"tags": [vip.pk, foreign_tag.pk, "Brand new"]}, format="json")

    body = assert_error(r, 400, "VALIDATION_ERROR")
    assert "tags" in body["errors"]
    assert tag_ids(lead) == set()
    assert not Tag.objects.filter(name="Brand new").exists()
    assert not foreign_tag.leads.exists()
    foreign_tag.refresh_from_db()
    assert foreign_tag.account_id != account.pk


def test_a_missing_tag_id_is_refused(owner_client, account, vip):
    lead = make_lead(account)

    assert_error(
        owner_client.post(lead_tags_url(lead), {"tags": [vip.pk + 1000]}, format="json"), 400, "VALIDATION_ERROR"
    )
    assert tag_ids(lead) == set()


def test_another_accounts_lead_cannot_be_tagged(owner_client, other_account, vip):
    foreign_lead = make_lead(other_account)

    assert_error(owner_client.post(lead_tags_url(foreign_lead), {"tags": ["VIP"]}, format="json"), 404, "NOT_FOUND")
    assert tag_ids(foreign_lead) == set()
    assert not Tag.objects.filter(account=other_account).exists()


@pytest.mark.parametrize(
    "payload",
    [{}, {"tags": []}, {"tags": "VIP"}, {"tags": [True]}, {"tags": [None]}, {"tags": [""]}, {"tags": ["x" * 51]}],
)
def test_a_bad_tag_list_is_refused(owner_client, account, payload):
    lead = make_lead(account)

    assert_error(owner_client.post(lead_tags_url(lead), payload, format="json"), 400, "VALIDATION_ERROR")
    assert tag_ids(lead) == set()
    assert not Tag.objects.exists()


def test_remove_a_tag_from_a_lead(owner_client, account, vip):
    family = make_tag(account, "Family")
    lead = make_lead(account)
    other = make_lead(account)
    lead.tags.add(vip, family)
    other.tags.add(vip)

    r = owner_client.delete(f"/api/leads/{lead.pk}/tags/{vip.pk}")

    assert r.status_code == 200, r.content
    assert r.json()["success"] is True
    assert tag_ids(lead) == {family.pk}
    assert tag_ids(other) == {vip.pk}  # only that lead
    assert Tag.objects.filter(pk=vip.pk).exists()  # the tag itself stays


def test_remove_answers_with_a_trailing_slash_too(agent_client, account, vip):
    lead = make_lead(account)
    lead.tags.add(vip)

    r = agent_client.delete(f"/api/leads/{lead.pk}/tags/{vip.pk}/")

    assert r.status_code == 200, r.content
    assert tag_ids(lead) == set()


def test_removing_another_accounts_tag_is_not_found(owner_client, account, other_account, foreign_tag):
    lead = make_lead(account)
    foreign_lead = make_lead(other_account)
    foreign_lead.tags.add(foreign_tag)

    assert_error(owner_client.delete(f"/api/leads/{lead.pk}/tags/{foreign_tag.pk}"), 404, "NOT_FOUND")
    assert tag_ids(foreign_lead) == {foreign_tag.pk}


def test_removing_a_tag_from_another_accounts_lead_is_not_found(owner_client, other_account, foreign_tag):
    foreign_lead = make_lead(other_account)
    foreign_lead.tags.add(foreign_tag)

    assert_error(owner_client.delete(f"/api/leads/{foreign_lead.pk}/tags/{foreign_tag.pk}"), 404, "NOT_FOUND")
    assert tag_ids(foreign_lead) == {foreign_tag.pk}


def test_an_agent_cannot_untag_someone_elses_lead(agent_client, account, owner, vip):
    lead = make_lead(account, assigned_to=owner)
    lead.tags.add(vip)

    assert_error(agent_client.delete(f"/api/leads/{lead.pk}/tags/{vip.pk}"), 404, "NOT_FOUND")
    assert tag_ids(lead) == {vip.pk}


# --- Where tags show ---------------------------------------------------------------------


def test_tags_show_on_the_lead_list_the_lead_and_the_contacts(owner_client, account, vip):
    lead = make_lead(account, "Tagged", phone="+919876543210")
    make_lead(account, "Untagged")
    assert owner_client.post(lead_tags_url(lead), {"tags": [vip.pk, "Family"]}, format="json").status_code == 200
    family = Tag.objects.get(account=account, name="Family")
    expected = [
        {"id": family.pk, "name": "Family", "color": DEFAULT_COLOR},
        {"id": vip.pk, "name": "VIP", "color": "#00aa00"},
    ]

    listed = {row["name"]: row for row in owner_client.get("/api/leads").json()["data"]}
    detail = owner_client.get(f"/api/leads/{lead.pk}").json()["data"]
    contacts = {row["name"]: row for row in owner_client.get("/api/contacts").json()}

    assert sorted(listed["Tagged"]["tags"], key=lambda t: t["name"]) == expected
    assert listed["Untagged"]["tags"] == []
    assert sorted(detail["tags"], key=lambda t: t["name"]) == expected
    assert sorted(contacts["Tagged"]["tags"], key=lambda t: t["name"]) == expected
    assert contacts["Untagged"]["tags"] == []

    tags = {t["name"]: t["leadCount"] for t in owner_client.get("/api/tags").json()["data"]}
    assert tags == {"Family": 1, "VIP": 1}


def test_the_lead_list_filters_by_a_tag_added_here(owner_client, account, vip):
    tagged = make_lead(account)
    make_lead(account)
    owner_client.post(lead_tags_url(tagged), {"tags": ["vip"]}, format="json")

    by_id = owner_client.get("/api/leads", {"tag": vip.pk}).json()["data"]
    by_name = owner_client.get("/api/leads", {"tag": "VIP"}).json()["data"]

    assert [row["id"] for row in by_id] == [str(tagged.pk)]
    assert [row["id"] for row in by_name] == [str(tagged.pk)]


def test_a_removed_tag_no_longer_shows_on_the_contact(owner_client, account, vip):
    lead = make_lead(account)
    lead.tags.add(vip)

    owner_client.delete(f"/api/leads/{lead.pk}/tags/{vip.pk}")

    (contact,) = owner_client.get("/api/contacts").json()
    assert contact["tags"] == []


def test_an_agent_counts_only_the_leads_they_can_see(agent, owner, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "100000/15m"}
    from conftest import bearer_client
    from leads.models import Lead, Tag

    tag = Tag.objects.create(account=owner.account, name="Hot prospects")
    mine = Lead.objects.create(account=owner.account, name="Mine", phone="+919811111111", assigned_to=agent)
    free = Lead.objects.create(account=owner.account, name="Free", phone="+919811111112")
    theirs = Lead.objects.create(account=owner.account, name="Theirs", phone="+919811111113", assigned_to=owner)
    for lead in (mine, free, theirs):
        lead.tags.add(tag)

    as_agent = bearer_client(agent).get("/api/tags").json()["data"]
    as_admin = bearer_client(owner).get("/api/tags").json()["data"]

    assert [t["leadCount"] for t in as_agent if t["id"] == tag.pk] == [2]
    assert [t["leadCount"] for t in as_admin if t["id"] == tag.pk] == [3]
