"""Drip routes: create, read, update and delete drips with ordered steps; validation
that never answers 500 and never half-applies; enrolling (twice does nothing,
opted-out and converted leads skipped, other accounts' leads never enrolled); the
enrollments list and stopping one; constant queries per page and per enroll call.

Tenancy across accounts and roles is in test_drips_tenancy.py; the runner in
test_drips_runner.py."""

import threading
import uuid
from datetime import time, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import Drip, DripStep, Enrollment
from campaigns.services import drips as services
from heroshhi.errors import ValidationFailed
from leads.models import Lead
from leads.tests.factories import LeadFactory
from messaging.models import Message, Template

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "100000/15m"}


def text_step(text="Hello {{first_name}}", amount=0, unit="minutes") -> dict:
    return {"delay": {"amount": amount, "unit": unit}, "message": text}


def template_step(name="hello_world", params=("{{name}}",), amount=1, unit="days", language=None) -> dict:
    template = {"name": name, "params": list(params)}
    if language is not None:
        template["language"] = language
    return {"delay": {"amount": amount, "unit": unit}, "template": template}


def payload(**changes) -> dict:
    body = {
        "name": "Welcome series",
        "description": "New leads from the website",
        "isActive": True,
        "stopOnReply": True,
        "stopOnConversion": False,
        "sendWindow": {"start": "09:00", "end": "20:00"},
        "steps": [text_step(), template_step(), text_step("Still interested?", amount=3, unit="hours")],
    }
    body.update(changes)
    return body


def create(client, **changes) -> dict:
    response = client.post("/api/drips", payload(**changes), format="json")
    assert response.status_code == 201, response.content
    return response.json()["data"]


def stored_steps(drip_id) -> list[tuple]:
    return list(
        DripStep.objects.filter(drip_id=drip_id)
        .order_by("position")
        .values_list("position", "delay_amount", "delay_unit", "text", "template_name", "template_language")
    )


def error_paths(errors, prefix="") -> set[str]:
    """``{"steps": {"0": {"delay": {"unit": [...]}}}}`` → {"steps.0.delay.unit"}."""
    if isinstance(errors, dict):
        paths = set()
        for key, value in errors.items():
            paths |= error_paths(value, f"{prefix}.{key}" if prefix else str(key))
        return paths
    return {prefix}


# --- Create and read ----------------------------------------------------------------------------


def test_create_answers_the_drip_with_its_steps_in_order(owner_client, owner, account):
    account.time_zone = "Asia/Kolkata"
    account.save()

    data = create(owner_client)

    assert data["name"] == "Welcome series"
    assert data["isActive"] is True and data["stopOnReply"] is True and data["stopOnConversion"] is False
    assert data["sendWindow"] == {"start": "09:00", "end": "20:00", "timeZone": "Asia/Kolkata"}
    assert [step["position"] for step in data["steps"]] == [0, 1, 2]
    assert data["steps"][0] == {
        "position": 0,
        "delay": {"amount": 0, "unit": "minutes"},
        "type": "text",
        "message": "Hello {{first_name}}",
        "template": None,
    }
    # The template is resolved when saved: the approved one's language is stored.
    assert data["steps"][1]["template"] == {"name": "hello_world", "language": "en_US", "params": ["{{name}}"]}
    assert data["steps"][1]["message"] is None and data["steps"][1]["type"] == "template"
    assert data["steps"][2]["delay"] == {"amount": 3, "unit": "hours"}
    assert data["enrollments"] == {"active": 0, "completed": 0, "stopped": 0, "total": 0}
    assert data["createdBy"] == str(owner.pk)
    assert stored_steps(data["id"]) == [
        (0, 0, "minutes", "Hello {{first_name}}", "", ""),
        (1, 1, "days", "", "hello_world", "en_US"),
        (2, 3, "hours", "Still interested?", "", ""),
    ]
    assert owner_client.get(f"/api/drips/{data['id']}").json() == {"success": True, "data": data}


def test_create_answers_with_and_without_the_trailing_slash(owner_client):
    response = owner_client.post("/api/drips/", payload(name="Slash"), format="json")

    assert response.status_code == 201
    assert Drip.objects.filter(name="Slash").count() == 1


def test_defaults_and_a_drip_without_a_send_window(owner_client):
    response = owner_client.post("/api/drips", {"name": "Minimal", "steps": [text_step("Hi")]}, format="json")

    data = response.json()["data"]
    assert response.status_code == 201
    assert (data["isActive"], data["stopOnReply"], data["stopOnConversion"]) == (True, True, True)
    assert data["sendWindow"] is None
    assert data["description"] == ""


def test_html_is_removed_from_names_and_texts(owner_client):
    data = create(owner_client, name="<b>Promo</b><script>x()</script>", steps=[text_step("<i>Hi</i> there")])

    assert data["name"] == "Promo"
    assert data["steps"][0]["message"] == "Hi there"


# --- Validation: never a 500, never half-applied ------------------------------------------------

INVALID = {
    "unknown unit": ({"steps": [text_step(unit="weeks")]}, "steps.0.delay.unit"),
    "negative delay": ({"steps": [text_step(amount=-1)]}, "steps.0.delay.amount"),
    "huge delay": ({"steps": [text_step(amount=10**9)]}, "steps.0.delay.amount"),
    "delay as text": (
        {"steps": [{"delay": {"amount": "soon", "unit": "days"}, "message": "x"}]},
        "steps.0.delay.amount",
    ),
    "delay as bool": ({"steps": [{"delay": {"amount": True, "unit": "days"}, "message": "x"}]}, "steps.0.delay.amount"),
    "no delay": ({"steps": [{"message": "x"}]}, "steps.0.delay"),
    "51 steps": ({"steps": [text_step(f"Step {i}") for i in range(51)]}, "steps"),
    "empty steps": ({"steps": []}, "steps"),
    "steps not a list": ({"steps": "hello"}, "steps"),
    "a step not an object": ({"steps": [5]}, "steps.0.non_field_errors"),
    "text and template": ({"steps": [{**text_step(), **template_step()}]}, "steps.0.message"),
    "neither text nor template": ({"steps": [{"delay": {"amount": 1, "unit": "days"}}]}, "steps.0.message"),
    "text over 4096": ({"steps": [text_step("x" * 4097)]}, "steps.0.message"),
    "blank text": ({"steps": [text_step("   ")]}, "steps.0.message"),
    "text of only html": ({"steps": [text_step("<b></b>")]}, "steps.0.message"),
    "unknown variable": ({"steps": [text_step("Hi {{nmae}}")]}, "steps.0.message"),
    "unknown variable in params": ({"steps": [template_step(params=["{{nmae}}"])]}, "steps.0.template.params"),
    "unknown template": ({"steps": [template_step(name="no_such_template")]}, "steps.0.template.name"),
    "template of another language": ({"steps": [template_step(language="fr")]}, "steps.0.template.name"),
    "template param object": ({"steps": [template_step(params=[{"a": 1}])]}, "steps.0.template.params.0"),
    "isActive unknown": ({"isActive": "maybe"}, "isActive"),
    "stopOnReply list": ({"stopOnReply": []}, "stopOnReply"),
    "window hour 25": ({"sendWindow": {"start": "25:00", "end": "20:00"}}, "sendWindow.start"),
    "window without end": ({"sendWindow": {"start": "09:00"}}, "sendWindow.end"),
    "window as text": ({"sendWindow": "9 to 5"}, "sendWindow.non_field_errors"),
    "window of no length": ({"sendWindow": {"start": "09:00", "end": "09:00"}}, "sendWindow.end"),
    "no name": ({"name": ""}, "name"),
    "name too long": ({"name": "x" * 201}, "name"),
    "name not text": ({"name": {"a": 1}}, "name"),
}


@pytest.mark.parametrize("changes,path", list(INVALID.values()), ids=list(INVALID))
def test_create_refuses_bad_input_with_the_field_named_and_writes_nothing(owner_client, changes, path):
    response = owner_client.post("/api/drips", payload(**changes), format="json")

    body = response.json()
    assert response.status_code == 400, body
    assert body["success"] is False and body["error"] == "VALIDATION_ERROR"
    assert path in error_paths(body["errors"]), body["errors"]
    assert not Drip.objects.exists() and not DripStep.objects.exists()


def test_a_template_not_approved_is_refused_at_save_time(owner_client, account):
    Template.objects.create(account=account, name="promo", language="en_US", status=Template.Status.PENDING)

    response = owner_client.post("/api/drips", payload(steps=[text_step(), template_step("promo")]), format="json")

    body = response.json()
    assert response.status_code == 400 and body["error"] == "VALIDATION_ERROR"
    assert "PENDING" in body["errors"]["steps"]["1"]["template"]["name"][0]
    assert not Drip.objects.exists()


@pytest.mark.parametrize("body", [[], "text", 5, None], ids=["list", "string", "number", "null"])
def test_a_body_that_is_not_an_object_is_a_validation_error(owner_client, body):
    response = owner_client.post("/api/drips", body, format="json")

    assert response.status_code == 400 and response.json()["error"] == "VALIDATION_ERROR"
    assert not Drip.objects.exists()


def test_malformed_json_is_invalid_json(owner_client):
    response = owner_client.post("/api/drips", b'{"name": ', content_type="application/json")

    assert response.status_code == 400 and response.json()["error"] == "INVALID_JSON"


def test_a_10_mb_text_is_refused_and_nothing_is_written(owner_client):
    drip = create(owner_client)
    before = stored_steps(drip["id"])
    huge = payload(steps=[text_step("x" * (10 * 1024 * 1024))])

    created = owner_client.post("/api/drips", huge, format="json")
    replaced = owner_client.put(f"/api/drips/{drip['id']}", huge, format="json")

    for response in (created, replaced):
        # Over DATA_UPLOAD_MAX_MEMORY_SIZE (2 MiB): refused before it is parsed.
        assert response.status_code == 413
        assert response.json()["success"] is False and response.json()["error"] == "PAYLOAD_TOO_LARGE"
    assert Drip.objects.count() == 1
    assert stored_steps(drip["id"]) == before


def test_the_service_refuses_a_10_mb_text_too(account, owner):
    """Forms and the admin call the service directly: it checks lengths itself."""
    with pytest.raises(ValidationFailed) as refused:
        services.drip_create(
            account=account,
            user=owner,
            data={"name": "Big", "steps": [{"delay_amount": 0, "delay_unit": "days", "text": "x" * 10_000_000}]},
        )

    assert "steps.0.text" in refused.value.errors
    assert not Drip.objects.exists()


def test_the_service_collects_every_problem_at_once(account, owner):
    with pytest.raises(ValidationFailed) as refused:
        services.drip_create(
            account=account,
            user=owner,
            data={
                "name": "",
                "is_active": "yes",
                "send_window_start": "7am",
                "send_window_end": None,
                "steps": [
                    {"delay_amount": -5, "delay_unit": "fortnights", "text": "Hi"},
                    {"delay_amount": 1, "delay_unit": "days", "text": "Hi", "template_name": "hello_world"},
                    "not a step",
                ],
            },
        )

    assert set(refused.value.errors) == {
        "name",
        "is_active",
        "send_window_start",
        "steps.0.delay_amount",
        "steps.0.delay_unit",
        "steps.1.text",
        "steps.2",
    }


# --- Update -------------------------------------------------------------------------------------


def test_put_replaces_every_field_and_the_steps_as_a_whole(owner_client):
    drip = create(owner_client)
    old_ids = set(DripStep.objects.filter(drip_id=drip["id"]).values_list("pk", flat=True))

    response = owner_client.put(
        f"/api/drips/{drip['id']}",
        {
            "name": "Renamed",
            "steps": [
                template_step("appointment_reminder", params=["{{name}}", "Monday"], amount=2, unit="hours"),
                text_step("Bye", amount=5),
            ],
        },
        format="json",
    )

    data = response.json()["data"]
    assert response.status_code == 200
    assert data["name"] == "Renamed"
    assert data["sendWindow"] is None  # left out of a PUT: back to the default
    assert data["stopOnConversion"] is True
    assert [(s["position"], s["type"]) for s in data["steps"]] == [(0, "template"), (1, "text")]
    assert stored_steps(drip["id"]) == [
        (0, 2, "hours", "", "appointment_reminder", "en_US"),
        (1, 5, "minutes", "Bye", "", ""),
    ]
    assert not DripStep.objects.filter(pk__in=old_ids).exists()


def test_patch_changes_only_the_fields_given(owner_client):
    drip = create(owner_client)
    before = stored_steps(drip["id"])

    paused = owner_client.patch(f"/api/drips/{drip['id']}", {"isActive": False}, format="json").json()["data"]
    windowless = owner_client.patch(f"/api/drips/{drip['id']}", {"sendWindow": None}, format="json").json()["data"]

    assert paused["isActive"] is False and paused["name"] == "Welcome series"
    assert paused["sendWindow"] == {"start": "09:00", "end": "20:00", "timeZone": "UTC"}
    assert windowless["sendWindow"] is None and windowless["isActive"] is False
    assert stored_steps(drip["id"]) == before

    owner_client.patch(f"/api/drips/{drip['id']}", {"steps": [text_step("Only one")]}, format="json")
    assert stored_steps(drip["id"]) == [(0, 0, "minutes", "Only one", "", "")]


@pytest.mark.parametrize("method", ["put", "patch"])
@pytest.mark.parametrize(
    "changes",
    [
        {"name": "Renamed", "steps": [text_step(), template_step("no_such_template")]},
        {"name": "Renamed", "steps": [text_step(unit="weeks")]},
        {"name": "Renamed", "steps": []},
        {"name": "Renamed", "sendWindow": {"start": "10:00", "end": "10:00"}},
        {"name": "Renamed", "isActive": "perhaps"},
    ],
    ids=["unapproved template", "unknown unit", "no steps", "empty window", "unknown enum"],
)
def test_a_refused_update_leaves_the_drip_and_its_old_steps(owner_client, method, changes):
    drip = create(owner_client)
    before = (stored_steps(drip["id"]), Drip.objects.filter(pk=drip["id"]).values().get())
    body = {**payload(), **changes}

    response = getattr(owner_client, method)(f"/api/drips/{drip['id']}", body, format="json")

    assert response.status_code == 400 and response.json()["error"] == "VALIDATION_ERROR"
    assert (stored_steps(drip["id"]), Drip.objects.filter(pk=drip["id"]).values().get()) == before


def test_an_update_failing_while_writing_rolls_back_to_the_old_steps(owner_client, owner, monkeypatch):
    drip_id = create(owner_client)["id"]
    before = stored_steps(drip_id)
    drip = Drip.objects.get(pk=drip_id)

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(DripStep.objects, "bulk_create", broken)
    with pytest.raises(RuntimeError):
        services.drip_update(drip=drip, user=owner, data={"name": "New", "steps": [{"text": "New step"}]})

    assert stored_steps(drip_id) == before
    assert Drip.objects.get(pk=drip_id).name == "Welcome series"


# --- Delete -------------------------------------------------------------------------------------


def test_delete_removes_the_drip_and_drops_its_unsent_messages_only(owner_client, account, owner):
    drip = Drip.objects.get(pk=create(owner_client)["id"])
    sent_lead, queued_lead = LeadFactory(account=account), LeadFactory(account=account)
    enrollments = [
        Enrollment.objects.create(account=account, drip=drip, lead=lead, next_due_at=timezone.now())
        for lead in (sent_lead, queued_lead)
    ]
    common = {"account": account, "direction": "outbound", "source": "drip", "drip_step": 0, "body": "Hi"}
    sent = Message.objects.create(lead=sent_lead, enrollment=enrollments[0], status="sent", wamid="wamid.1", **common)
    queued = Message.objects.create(lead=queued_lead, enrollment=enrollments[1], status="queued", **common)

    response = owner_client.delete(f"/api/drips/{drip.pk}")

    assert response.status_code == 200 and response.json()["success"] is True
    assert not Drip.objects.filter(pk=drip.pk).exists()
    assert not DripStep.objects.filter(drip_id=drip.pk).exists() and not Enrollment.objects.exists()
    assert not Message.objects.filter(pk=queued.pk).exists()
    assert Message.objects.get(pk=sent.pk).body == "Hi"  # the conversation keeps what was sent
    assert owner_client.get(f"/api/drips/{drip.pk}").status_code == 404


@pytest.mark.parametrize("path", [f"/api/drips/{uuid.uuid4()}", "/api/drips/not-a-uuid", "/api/drips/123/enroll"])
def test_unknown_drips_answer_404_in_the_envelope(owner_client, path):
    response = owner_client.get(path)

    assert response.status_code == 404
    assert response.json()["success"] is False and response.json()["error"] == "NOT_FOUND"


# --- List ---------------------------------------------------------------------------------------


def _enroll_rows(drip, account, statuses) -> list[Enrollment]:
    return [
        Enrollment.objects.create(
            account=account,
            drip=drip,
            lead=LeadFactory(account=account),
            status=status,
            stop_reason="cancelled" if status == "stopped" else "",
            next_due_at=timezone.now() if status == "active" else None,
        )
        for status in statuses
    ]


def test_the_list_has_steps_and_enrollment_counts_per_status_by_name(owner_client, account):
    beta = Drip.objects.get(pk=create(owner_client, name="Beta")["id"])
    create(owner_client, name="Alpha", steps=[text_step("One")])
    _enroll_rows(beta, account, ["active", "active", "completed", "stopped", "stopped", "stopped"])

    response = owner_client.get("/api/drips")

    body = response.json()
    assert response.status_code == 200 and body["success"] is True
    assert [drip["name"] for drip in body["data"]] == ["Alpha", "Beta"]
    assert body["data"][0]["enrollments"] == {"active": 0, "completed": 0, "stopped": 0, "total": 0}
    assert body["data"][1]["enrollments"] == {"active": 2, "completed": 1, "stopped": 3, "total": 6}
    assert [step["position"] for step in body["data"][1]["steps"]] == [0, 1, 2]
    assert body["pagination"] == {"page": 1, "limit": 20, "total": 2, "pages": 1}


def test_the_list_is_paginated(owner_client):
    for name in ("A", "B", "C"):
        create(owner_client, name=name)

    body = owner_client.get("/api/drips?page=2&limit=2").json()

    assert [drip["name"] for drip in body["data"]] == ["C"]
    assert body["pagination"] == {"page": 2, "limit": 2, "total": 3, "pages": 2}
    assert owner_client.get("/api/drips?page=0").json()["error"] == "VALIDATION_ERROR"


def _queries(client, path) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(path).status_code == 200
    return len(captured)


def test_the_list_costs_the_same_queries_for_2_or_12_drips(owner_client, account):
    for i in range(2):
        _enroll_rows(Drip.objects.get(pk=create(owner_client, name=f"First {i}")["id"]), account, ["active"])
    few = _queries(owner_client, "/api/drips?limit=50")
    for i in range(10):
        _enroll_rows(Drip.objects.get(pk=create(owner_client, name=f"More {i}")["id"]), account, ["stopped"])

    assert _queries(owner_client, "/api/drips?limit=50") == few


# --- Enroll -------------------------------------------------------------------------------------


@pytest.fixture
def drip(owner_client) -> Drip:
    return Drip.objects.get(pk=create(owner_client, stopOnConversion=True)["id"])


def enroll(client, drip, ids):
    return client.post(f"/api/drips/{drip.pk}/enroll", {"leadIds": [str(i) for i in ids]}, format="json")


def test_enroll_counts_what_happened_and_enrolls_only_the_right_leads(owner_client, drip, account, other_account):
    fresh = [LeadFactory(account=account) for _ in range(2)]
    opted_out = LeadFactory(account=account, is_opted_out=True)
    converted = LeadFactory(account=account, status=Lead.Status.CONVERTED)
    foreign = LeadFactory(account=other_account)
    ids = [*(lead.pk for lead in fresh), opted_out.pk, converted.pk, foreign.pk, uuid.uuid4(), fresh[0].pk]

    response = enroll(owner_client, drip, ids)

    body = response.json()
    assert response.status_code == 200 and body["success"] is True
    assert body["data"] == {
        "requested": 6,
        "enrolled": 2,
        "already": 0,
        "skipped_opted_out": 1,
        "skipped_converted": 1,
        "invalid": 2,
    }
    assert body["message"] == "2 lead(s) enrolled."
    enrolled = Enrollment.objects.filter(drip=drip)
    assert sorted(enrolled.values_list("lead_id", flat=True)) == sorted(lead.pk for lead in fresh)
    assert not Enrollment.objects.filter(lead=foreign).exists()
    for enrollment in enrolled:
        assert enrollment.status == "active" and enrollment.next_step == 0
        # The first step's delay is 0 minutes: due at once.
        assert enrollment.next_due_at == enrollment.enrolled_at


def test_enrolling_twice_does_not_double(owner_client, drip, account):
    leads = [LeadFactory(account=account) for _ in range(3)]
    enroll(owner_client, drip, [leads[0].pk])

    again = enroll(owner_client, drip, [lead.pk for lead in leads]).json()["data"]
    once_more = enroll(owner_client, drip, [lead.pk for lead in leads]).json()["data"]

    assert (again["enrolled"], again["already"]) == (2, 1)
    assert (once_more["enrolled"], once_more["already"]) == (0, 3)
    assert Enrollment.objects.filter(drip=drip).count() == 3


def test_the_first_step_is_due_after_its_delay(owner_client, account, owner):
    drip = Drip.objects.get(pk=create(owner_client, steps=[text_step(amount=2, unit="days")])["id"])
    lead = LeadFactory(account=account)
    now = timezone.now()

    services.drip_enroll(drip=drip, user=owner, lead_ids=[lead.pk], now=now)

    assert Enrollment.objects.get(lead=lead).next_due_at == now + timedelta(days=2)


def test_a_lead_who_finished_can_enroll_again(owner_client, drip, account):
    lead = LeadFactory(account=account)
    enroll(owner_client, drip, [lead.pk])
    Enrollment.objects.filter(lead=lead).update(status="completed", next_due_at=None)

    data = enroll(owner_client, drip, [lead.pk]).json()["data"]

    assert data["enrolled"] == 1
    assert list(Enrollment.objects.filter(lead=lead).values_list("status", flat=True).order_by("status")) == [
        "active",
        "completed",
    ]


def test_converted_leads_are_enrolled_when_the_drip_does_not_stop_on_conversion(owner_client, account):
    drip = Drip.objects.get(pk=create(owner_client, stopOnConversion=False)["id"])
    customer = LeadFactory(account=account, status=Lead.Status.CONVERTED)

    assert enroll(owner_client, drip, [customer.pk]).json()["data"]["enrolled"] == 1


def test_an_inactive_drip_refuses_enrollments(owner_client, account):
    drip = Drip.objects.get(pk=create(owner_client, isActive=False)["id"])

    response = enroll(owner_client, drip, [LeadFactory(account=account).pk])

    assert response.status_code == 400 and response.json()["error"] == "DRIP_INACTIVE"
    assert not Enrollment.objects.exists()


@pytest.mark.parametrize(
    "body",
    [{}, {"leadIds": []}, {"leadIds": "abc"}, {"leadIds": ["not-a-uuid"]}, {"leadIds": [1, 2]}, {"leadIds": None}],
    ids=["missing", "empty", "string", "not uuids", "integers", "null"],
)
def test_enroll_refuses_malformed_ids(owner_client, drip, body):
    response = owner_client.post(f"/api/drips/{drip.pk}/enroll", body, format="json")

    assert response.status_code == 400 and response.json()["error"] == "VALIDATION_ERROR"
    assert not Enrollment.objects.exists()


def test_enroll_refuses_more_than_5000_ids(owner_client, drip):
    response = owner_client.post(
        f"/api/drips/{drip.pk}/enroll", {"leadIds": [str(uuid.uuid4()) for _ in range(5001)]}, format="json"
    )

    assert response.status_code == 400 and response.json()["error"] == "VALIDATION_ERROR"


def test_enrolling_costs_the_same_queries_for_3_or_60_leads(owner_client, account):
    def queries(count: int) -> int:
        drip = Drip.objects.get(pk=create(owner_client, name=f"Drip {count}")["id"])
        ids = [LeadFactory(account=account).pk for _ in range(count)]
        ids.append(LeadFactory(account=account, is_opted_out=True).pk)
        with CaptureQueriesContext(connection) as captured:
            assert enroll(owner_client, drip, ids).json()["data"]["enrolled"] == count
        return len(captured)

    assert queries(60) == queries(3)


# --- Enrollments and stopping one ---------------------------------------------------------------


def test_the_enrollments_list_is_paginated_and_filtered_by_status(owner_client, drip, account):
    rows = _enroll_rows(drip, account, ["active", "stopped", "completed", "stopped"])

    everything = owner_client.get(f"/api/drips/{drip.pk}/enrollments").json()
    stopped = owner_client.get(f"/api/drips/{drip.pk}/enrollments?status=stopped&limit=1").json()

    assert everything["pagination"]["total"] == 4
    assert [e["id"] for e in everything["data"]] == [row.pk for row in reversed(rows)]  # latest first
    assert stopped["pagination"] == {"page": 1, "limit": 1, "total": 2, "pages": 2}
    assert stopped["data"][0]["status"] == "stopped" and stopped["data"][0]["stopReason"] == "cancelled"
    first = everything["data"][-1]
    assert first["leadId"] == str(rows[0].lead_id) and first["leadName"] == rows[0].lead.name
    assert first["leadPhone"] == rows[0].lead.phone.lstrip("+")
    assert first["dripId"] == str(drip.pk) and first["nextStep"] == 0 and first["stopReason"] is None
    response = owner_client.get(f"/api/drips/{drip.pk}/enrollments?status=paused")
    assert response.status_code == 400 and response.json()["error"] == "VALIDATION_ERROR"


def test_the_enrollments_list_costs_the_same_queries_for_3_or_30(owner_client, drip, account):
    _enroll_rows(drip, account, ["active"] * 3)
    few = _queries(owner_client, f"/api/drips/{drip.pk}/enrollments?limit=100")
    _enroll_rows(drip, account, ["stopped"] * 27)

    assert _queries(owner_client, f"/api/drips/{drip.pk}/enrollments?limit=100") == few


def test_stopping_an_enrollment_drops_its_unsent_step_and_nothing_else(owner_client, drip, account):
    stopped_one, other = _enroll_rows(drip, account, ["active", "active"])
    common = {"account": account, "direction": "outbound", "source": "drip", "status": "queued", "body": "Hi"}
    claimed = Message.objects.create(
        lead=stopped_one.lead, enrollment=stopped_one, drip_step=0, claimed_at=timezone.now(), **common
    )
    unsent = Message.objects.create(lead=stopped_one.lead, enrollment=stopped_one, drip_step=1, **common)
    others = Message.objects.create(lead=other.lead, enrollment=other, drip_step=0, **common)

    response = owner_client.post(f"/api/drips/{drip.pk}/enrollments/{stopped_one.pk}/stop")

    data = response.json()["data"]
    assert response.status_code == 200
    assert (data["status"], data["stopReason"], data["nextDueAt"]) == ("stopped", "cancelled", None)
    assert data["finishedAt"] is not None
    assert not Message.objects.filter(pk=unsent.pk).exists()
    assert Message.objects.filter(pk__in=[claimed.pk, others.pk]).count() == 2  # a worker holds the first
    other.refresh_from_db()
    assert other.status == "active"


def test_stopping_a_finished_enrollment_leaves_it_as_it_is(owner_client, drip, account):
    completed, stopped = _enroll_rows(drip, account, ["completed", "stopped"])
    Enrollment.objects.filter(pk=stopped.pk).update(stop_reason="replied")

    done = owner_client.post(f"/api/drips/{drip.pk}/enrollments/{completed.pk}/stop").json()["data"]
    again = owner_client.post(f"/api/drips/{drip.pk}/enrollments/{stopped.pk}/stop").json()["data"]

    assert (done["status"], done["stopReason"]) == ("completed", None)
    assert (again["status"], again["stopReason"]) == ("stopped", "replied")


def test_an_enrollment_of_another_drip_is_404(owner_client, drip, account):
    other_drip = Drip.objects.get(pk=create(owner_client, name="Other")["id"])
    [enrollment] = _enroll_rows(other_drip, account, ["active"])

    response = owner_client.post(f"/api/drips/{drip.pk}/enrollments/{enrollment.pk}/stop")

    assert response.status_code == 404 and response.json()["error"] == "NOT_FOUND"
    assert Enrollment.objects.get(pk=enrollment.pk).status == "active"


# --- OpenAPI ------------------------------------------------------------------------------------


def test_the_schema_documents_every_drip_route(client):
    paths = client.get("/api/schema?format=json").json()["paths"]

    assert set(paths["/api/drips"]) >= {"get", "post"}
    assert set(paths["/api/drips/{drip_id}"]) >= {"get", "put", "patch", "delete"}
    assert "post" in paths["/api/drips/{drip_id}/enroll"]
    assert "get" in paths["/api/drips/{drip_id}/enrollments"]
    assert "post" in paths["/api/drips/{drip_id}/enrollments/{enrollment_id}/stop"]


def test_window_times_are_stored_as_times(owner_client):
    drip = create(owner_client, sendWindow={"start": "20:00", "end": "08:30"})

    stored = Drip.objects.get(pk=drip["id"])
    assert (stored.send_window_start, stored.send_window_end) == (time(20, 0), time(8, 30))


@pytest.mark.django_db(transaction=True)
def test_two_enrollments_of_the_same_leads_at_once_enroll_each_lead_once(account, owner, purged_broker):
    """The partial unique constraint decides between concurrent calls: each lead is
    enrolled once, and the two answers add up."""
    drip = services.drip_create(
        account=account, user=owner, data={"name": "Race", "steps": [{"delay_amount": 1, "text": "Hi"}]}
    )
    ids = [LeadFactory(account=account).pk for _ in range(50)]
    barrier = threading.Barrier(2)
    answers, errors = [], []

    def enroll_all():
        try:
            barrier.wait()
            answers.append(services.drip_enroll(drip=drip, user=owner, lead_ids=ids))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=enroll_all) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sum(answer.enrolled for answer in answers) == 50
    assert [answer.enrolled + answer.already for answer in answers] == [50, 50]
    assert Enrollment.objects.filter(drip=drip, status="active").count() == 50
