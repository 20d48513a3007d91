"""Hostile and malformed input on the lead routes: HTML is stripped from stored free
text, SQL-looking text is stored verbatim (and harmless), oversized and mistyped
values are refused with the envelope — never a 500 — and a refused write leaves
nothing half-written."""

import json

import pytest

from leads.models import Engagement, Lead
from leads.tests.factories import LeadFactory

LEADS = "/api/leads"


@pytest.fixture(autouse=True)
def _generous_rate_limits_and_fast_hashing(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "100000/15m", "auth": "1000/15m"}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def create(client, **fields):
    return client.post(LEADS, {"name": "Priya", "phone": "9876543210", **fields}, format="json")


def assert_refused(response, *fields: str, status_code: int = 400, code: str = "VALIDATION_ERROR") -> dict:
    assert response.status_code == status_code, (response.status_code, response.content[:500])
    body = response.json()
    assert body["success"] is False
    assert body["error"] == code
    assert body["message"]
    for field in fields:
        assert field in body.get("errors", {}), body
    return body


# --- HTML ------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["name", "notes", "inquiry", "source"])
@pytest.mark.parametrize(
    ("dirty", "clean"),
    [
        ("<script>alert(1)</script>Priya Sharma", "Priya Sharma"),
        ('Priya <img src=x onerror="alert(1)">Sharma', "Priya Sharma"),
        ("<b>Priya</b> <i>Sharma</i>", "Priya Sharma"),
        ('<a href="javascript:alert(1)">Priya Sharma</a>', "Priya Sharma"),
        ("&lt;script&gt;alert(1)&lt;/script&gt;Priya Sharma", "Priya Sharma"),
        ("<svg onload=alert(1)>Priya Sharma</svg>", "Priya Sharma"),
    ],
)
def test_html_is_stripped_from_free_text(account, owner_client, field, dirty, clean):
    response = create(owner_client, **{field: dirty})

    assert response.status_code == 201, response.content
    assert response.json()["data"][field] == clean
    lead = Lead.objects.get()
    assert getattr(lead, field) == clean
    assert "<" not in getattr(lead, field)


def test_html_is_stripped_on_update_and_from_engagements(account, owner_client):
    lead = LeadFactory(account=account, name="Priya")

    patched = owner_client.patch(
        f"{LEADS}/{lead.pk}", {"notes": "<script>steal()</script>Call <b>back</b>"}, format="json"
    )
    logged = owner_client.post(
        f"{LEADS}/{lead.pk}/engagement", {"type": "note", "notes": "<img src=x onerror=alert(1)>Met"}, format="json"
    )

    assert patched.status_code == 200
    assert logged.status_code == 201
    lead.refresh_from_db()
    assert lead.notes == "Call back"
    assert Engagement.objects.get().notes == "Met"
    assert logged.json()["data"]["notes"] == "Met"


def test_bulk_update_strips_html_from_the_source(account, owner_client):
    lead = LeadFactory(account=account, source="Web")

    response = owner_client.post(
        f"{LEADS}/bulk-update",
        {"ids": [str(lead.pk)], "updates": {"source": "<script>x()</script>Expo <b>2026</b>"}},
        format="json",
    )

    assert response.status_code == 200
    lead.refresh_from_db()
    assert lead.source == "Expo 2026"


def test_text_with_angle_brackets_that_is_not_html_survives(account, owner_client):
    response = create(owner_client, notes="Budget < 5 lakh & timeline > 2 weeks")

    assert response.status_code == 201
    assert Lead.objects.get().notes == "Budget < 5 lakh & timeline > 2 weeks"


@pytest.mark.parametrize("name", ["<b></b>", "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "   "])
def test_a_name_that_is_only_markup_or_blank_is_refused(account, owner_client, name):
    assert_refused(create(owner_client, name=name), "name")
    assert not Lead.objects.exists()


def test_patching_a_name_to_only_markup_is_refused(account, owner_client):
    lead = LeadFactory(account=account, name="Priya")

    assert_refused(owner_client.patch(f"{LEADS}/{lead.pk}", {"name": "<b></b>", "status": "lost"}, format="json"))

    lead.refresh_from_db()
    assert (lead.name, lead.status) == ("Priya", "pending")


# --- SQL-looking text and Unicode --------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "'; DROP TABLE leads_lead; --",
        "Robert'); DROP TABLE leads_lead;--",
        "1' OR '1'='1",
        '" OR ""="',
        "%_\\%",
    ],
)
def test_sql_looking_text_is_stored_verbatim(account, owner_client, text):
    response = create(owner_client, name=text, notes=text, inquiry=text, source=text[:100])

    assert response.status_code == 201, response.content
    lead = Lead.objects.get()
    assert (lead.name, lead.notes, lead.inquiry) == (text, text, text)
    assert response.json()["data"]["name"] == text
    # The table is still there, and searching for the text is just a search.
    assert LeadFactory(account=account).pk
    listed = owner_client.get(LEADS, {"search": text})
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()["data"]] == [str(lead.pk)]
    assert owner_client.get(LEADS).json()["pagination"]["total"] == 2


def test_unicode_is_kept(account, owner_client):
    response = create(owner_client, name="प्रिया शर्मा 🌸", notes="Zoë — “quoted” ✓")

    assert response.status_code == 201
    lead = Lead.objects.get()
    assert (lead.name, lead.notes) == ("प्रिया शर्मा 🌸", "Zoë — “quoted” ✓")


# --- Sizes -----------------------------------------------------------------------------


def test_a_10_mb_string_is_payload_too_large(account, owner_client):
    huge = "A" * (10 * 1024 * 1024)

    response = create(owner_client, notes=huge)

    assert_refused(response, status_code=413, code="PAYLOAD_TOO_LARGE")
    assert not Lead.objects.exists()


def test_a_10_mb_patch_is_payload_too_large(account, owner_client):
    lead = LeadFactory(account=account, notes="")

    response = owner_client.patch(f"{LEADS}/{lead.pk}", {"notes": "A" * (10 * 1024 * 1024)}, format="json")

    assert_refused(response, status_code=413, code="PAYLOAD_TOO_LARGE")
    lead.refresh_from_db()
    assert lead.notes == ""


@pytest.mark.parametrize(
    ("field", "length"),
    [("name", 201), ("name", 300), ("source", 101), ("inquiry", 5001), ("notes", 10001), ("email", 300)],
)
def test_too_long_values_are_refused(account, owner_client, field, length):
    value = "a" * length if field != "email" else "a" * (length - 9) + "@mail.com"

    assert_refused(create(owner_client, **{field: value}), field)
    assert not Lead.objects.exists()


def test_the_longest_name_is_accepted(account, owner_client):
    response = create(owner_client, name="a" * 200)

    assert response.status_code == 201
    assert Lead.objects.get().name == "a" * 200


# --- Types -----------------------------------------------------------------------------


def test_a_number_for_the_name_is_read_as_text(account, owner_client):
    """DRF's CharField takes a number as its text; a client sending 123 gets "123"."""
    response = create(owner_client, name=123)

    assert response.status_code == 201, response.content
    assert response.json()["data"]["name"] == "123"
    assert Lead.objects.get().name == "123"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": True}, "name"),
        ({"name": ["Priya"]}, "name"),
        ({"name": {"first": "Priya"}}, "name"),
        ({"name": None}, "name"),
        ({"phone": 9876543210.5}, "phone"),
        ({"phone": ["9876543210"]}, "phone"),
        ({"tags": "notalist"}, "tags"),
        ({"tags": {"name": "VIP"}}, "tags"),
        ({"tags": [["VIP"]]}, "tags"),
        ({"tags": [True]}, "tags"),
        ({"tags": [None]}, "tags"),
        ({"tags": [""]}, "tags"),
        ({"tags": ["x" * 51]}, "tags"),
        ({"tags": [f"t{i}" for i in range(51)]}, "tags"),
        ({"assignedTo": "not-a-uuid"}, "assignedTo"),
        ({"assignedTo": 42}, "assignedTo"),
        ({"isOptedOut": "maybe"}, "isOptedOut"),
        ({"isOptedOut": [True]}, "isOptedOut"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "<script>@x.com"}, "email"),
        ({"segment": "boiling"}, "segment"),
        ({"segment": 1}, "segment"),
        ({"status": "won"}, "status"),
        ({"status": "Pending"}, "status"),
        ({"status": None}, "status"),
    ],
)
def test_wrong_types_and_unknown_enum_values_are_refused(account, owner_client, fields, field):
    assert_refused(create(owner_client, **fields), field)
    assert not Lead.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"segment": "boiling"}, "segment"), ({"status": "won"}, "status"), ({"isOptedOut": "maybe"}, "isOptedOut")],
)
def test_unknown_enum_values_are_refused_on_patch_and_bulk_update(account, owner_client, fields, field):
    lead = LeadFactory(account=account, status="pending", segment="warm")

    assert_refused(owner_client.patch(f"{LEADS}/{lead.pk}", fields, format="json"), field)
    assert_refused(
        owner_client.post(f"{LEADS}/bulk-update", {"ids": [str(lead.pk)], "updates": fields}, format="json"),
        "updates",
    )

    lead.refresh_from_db()
    assert (lead.status, lead.segment, lead.is_opted_out) == ("pending", "warm", False)


@pytest.mark.parametrize("field", ["name", "phone", "notes", "inquiry", "source", "email"])
def test_nul_bytes_are_refused(account, owner_client, field):
    value = {"phone": "98765\x0043210", "email": "pri\x00ya@mail.com"}.get(field, "Pri\x00ya")

    assert_refused(create(owner_client, **{field: value}), field)
    assert not Lead.objects.exists()


def test_a_nul_byte_in_a_tag_name_is_refused(account, owner_client):
    assert_refused(create(owner_client, tags=["V\x00IP"]), "tags")
    assert not Lead.objects.exists()


# --- Bodies that are not a lead --------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        ("{not json", "application/json", "INVALID_JSON"),
        ('{"name": "Priya", "phone": ', "application/json", "INVALID_JSON"),
        ("[" * 100_000 + "]" * 100_000, "application/json", "INVALID_JSON"),
        (json.dumps(["Priya", "9876543210"]), "application/json", "VALIDATION_ERROR"),
        (json.dumps("Priya"), "application/json", "VALIDATION_ERROR"),
        (json.dumps(None), "application/json", "VALIDATION_ERROR"),
    ],
)
def test_a_body_that_is_not_a_lead_object_is_a_400(account, owner_client, body, content_type, code):
    response = owner_client.generic("POST", LEADS, body, content_type=content_type)

    assert_refused(response, code=code)
    assert not Lead.objects.exists()


def test_an_unsupported_media_type_is_415(account, owner_client):
    response = owner_client.generic("POST", LEADS, "<lead><name>Priya</name></lead>", content_type="application/xml")

    assert_refused(response, status_code=415, code="UNSUPPORTED_MEDIA_TYPE")
    assert not Lead.objects.exists()


def test_unknown_fields_are_ignored_not_stored(account, owner_client, other_account):
    response = create(owner_client, account=str(other_account.pk), id="00000000-0000-0000-0000-000000000001")

    assert response.status_code == 201
    lead = Lead.objects.get()
    assert lead.account_id == account.pk
    assert str(lead.pk) != "00000000-0000-0000-0000-000000000001"
