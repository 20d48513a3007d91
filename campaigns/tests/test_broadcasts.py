"""Broadcasts: the API routes, the snapshot into the outbox, variables, audiences and
filters, roles and tenancy, scheduling, drafts, cancel, completion, and delivery through
the real sending path against the fake Graph API server.

django-q2 tasks are not run by a worker here: ``task_queue`` records what would be
queued (``django_q.tasks.async_task``) and ``run_tasks`` runs the broadcast's own tasks
in this process, as a worker would. tests/test_broadcasts_live.py runs real clusters."""

import importlib
import uuid
import zoneinfo
from collections import Counter
from datetime import timedelta

import pytest
from django.contrib.admin.sites import site as admin_site
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from accounts.models import User
from accounts.tests.factories import UserFactory
from campaigns.models import Broadcast
from campaigns.selectors.broadcasts import MAX_LEAD_IDS
from campaigns.services import broadcasts as services
from campaigns.services.variables import render_variables, unknown_variables
from campaigns.tasks import broadcasts as tasks
from campaigns.tasks import dispatch_due
from campaigns.tests.helpers import approved_template
from conftest import bearer_client
from leads.models import Lead
from leads.tests.factories import LeadFactory, TagFactory
from messaging.models import Message, Template

URL = "/api/broadcasts"


def url(broadcast, action: str = "") -> str:
    return f"{URL}/{broadcast.pk if isinstance(broadcast, Broadcast) else broadcast}" + (f"/{action}" if action else "")


def open_lead(account, **fields) -> Lead:
    """A lead who wrote an hour ago: the 24-hour window is open."""
    fields.setdefault("last_inbound_at", timezone.now() - timedelta(hours=1))
    return LeadFactory(account=account, **fields)


def assert_error(response, status: int, code: str) -> dict:
    body = response.json()
    assert response.status_code == status, body
    assert body["success"] is False
    assert body["error"] == code
    assert body["message"]
    return body


def nothing_created() -> bool:
    return not Broadcast.objects.exists() and not Message.objects.filter(source=Message.Source.BROADCAST).exists()


@pytest.fixture
def task_queue(monkeypatch) -> list:
    """What would be handed to django-q2, in order: (task path, args)."""
    queued: list = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kwargs: queued.append((func, args)))
    return queued


def run_tasks(queue: list, prefix: str = "campaigns.tasks.broadcasts.") -> list:
    """Runs the queued broadcast tasks as a worker would (others are dropped); answers what ran."""
    ran = []
    while queue:
        func, args = queue.pop(0)
        if not func.startswith(prefix):
            continue
        module, name = func.rsplit(".", 1)
        getattr(importlib.import_module(module), name)(*args)
        ran.append((func, args))
    return ran


@pytest.fixture
def create(owner_client, django_capture_on_commit_callbacks):
    """POST /api/broadcasts as the owner, running the on-commit hooks (the enqueueing)."""

    def post(body: dict, client=None):
        with django_capture_on_commit_callbacks(execute=True):
            return (client or owner_client).post(URL, body, format="json")

    return post


# --- Variables ----------------------------------------------------------------------------------


def test_variables_render_each_lead_field_and_ignore_case_and_underscores(account, owner):
    lead = LeadFactory(
        account=account,
        name="Asha Rao",
        phone="+919812345678",
        email="asha@example.com",
        source="Expo",
        segment="hot",
        assigned_to=owner,
    )
    text = (
        "{{name}}|{{ First_Name }}|{{firstName}}|{{phone}}|{{email}}|{{SOURCE}}|{{segment}}|{{status}}|{{assigned_to}}"
    )
    assert render_variables(text, lead=lead) == (
        f"Asha Rao|Asha|Asha|919812345678|asha@example.com|Expo|hot|pending|{owner.name}"
    )
    assert unknown_variables([text, "{{nmae}} and {{1}} and {name}"]) == ["{{nmae}}", "{{1}}"]


# --- Create: text, template, counts ---------------------------------------------------------------


def test_a_text_broadcast_snapshots_its_audience_and_counts_what_it_skips(account, owner, create, task_queue):
    reachable = [open_lead(account, name=f"Lead {i}") for i in range(3)]
    opted_out = open_lead(account, is_opted_out=True)
    closed = LeadFactory(account=account, last_inbound_at=timezone.now() - timedelta(hours=30))
    never_wrote = LeadFactory(account=account)
    ids = [str(lead.pk) for lead in [*reachable, opted_out, closed, never_wrote]]

    response = create({"name": "Showroom", "message": "Hi {{name}}, we open at 10.", "leadIds": ids})

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert data["name"] == "Showroom"
    assert data["status"] == "sending"
    assert data["message"] == "Hi {{name}}, we open at 10."
    assert data["template"] is None
    assert data["audience"] == {"leadIds": 6}
    assert data["recipients"] == 3
    assert data["totals"] == {"queued": 3, "sent": 0, "delivered": 0, "read": 0, "failed": 0}
    assert (data["skippedOptedOut"], data["skippedWindowClosed"], data["skippedInvalid"]) == (1, 2, 0)
    assert data["createdBy"] == str(owner.pk)
    assert data["startedAt"] is not None and data["finishedAt"] is None
    messages = Message.objects.filter(broadcast_id=data["id"])
    assert {m.lead_id: m.body for m in messages} == {lead.pk: f"Hi {lead.name}, we open at 10." for lead in reachable}
    assert {(m.direction, m.status, m.source, m.type, m.sent_by_id) for m in messages} == {
        ("outbound", "queued", "broadcast", "text", owner.pk)
    }
    # Delivery is queued in batches through the broadcast's own task.
    assert task_queue == [("campaigns.tasks.broadcasts.send_batch", (data["id"], [str(m.pk) for m in messages]))]


def test_a_template_broadcast_renders_variables_per_lead_and_skips_empty_parameters(account, create, task_queue):
    template = approved_template(account)
    asha = LeadFactory(account=account, name="Asha Rao", source="Expo")
    ben = LeadFactory(account=account, name="Ben Li", source="Website")
    no_source = LeadFactory(account=account, name="Cy", source="")

    response = create(
        {
            "template": {"name": "offer", "language": "en_US", "params": ["{{first_name}}", "{{source}} 20%"]},
            "leadIds": [str(asha.pk), str(ben.pk), str(no_source.pk)],
        }
    )

    assert response.status_code == 201, response.json()
    data = response.json()["data"]
    assert data["template"] == {"name": "offer", "language": "en_US", "params": ["{{first_name}}", "{{source}} 20%"]}
    assert data["name"].startswith("Broadcast ")
    # Templates go to leads whose window is closed; "{{source}} 20%" is not empty for Cy,
    # so only a parameter that renders empty is skipped.
    assert data["recipients"] == 3
    messages = {m.lead_id: m for m in Message.objects.filter(broadcast_id=data["id"])}
    assert messages[asha.pk].template_params == ["Asha", "Expo 20%"]
    assert messages[asha.pk].body == "Hi Asha, Expo 20% off this week."
    assert messages[ben.pk].template_params == ["Ben", "Website 20%"]
    assert (messages[asha.pk].template_name, messages[asha.pk].template_language) == (template.name, "en_US")
    assert messages[no_source.pk].template_params == ["Cy", "20%"]

    second = create({"template": {"name": "offer", "params": ["{{name}}", "{{email}}"]}, "filter": {}})
    data = second.json()["data"]
    assert second.status_code == 201
    assert data["recipients"] == 3  # every lead has an email from the factory
    Lead.objects.filter(pk=ben.pk).update(email="")
    third = create({"template": {"name": "offer", "params": ["{{name}}", "{{email}}"]}, "filter": {}})
    data = third.json()["data"]
    assert (data["recipients"], data["skippedInvalid"]) == (2, 1)
    assert not Message.objects.filter(broadcast_id=data["id"], lead=ben).exists()


def test_the_snapshot_stores_tabs_newlines_backslashes_and_braces_exactly(account, create):
    """The snapshot writes raw rows (COPY text format on PostgreSQL, with a prepared
    line whose gaps are filled per lead): what needs escaping there comes back as written."""
    approved_template(account, name="tricky", body="Dear {{1}}: {{2}}")
    odd = open_lead(account, name="Zoë \\N {0} O'Brien", source="Tab\there")
    text = 'Hi {{name}},\tsee C:\\new\\table {x} {} "quoted" \\N 🎉\nline two'

    texted = create({"message": text, "leadIds": [str(odd.pk)]})
    templated = create(
        {"template": {"name": "tricky", "params": ["{{name}}", "{{source}} \\ {}"]}, "leadIds": [str(odd.pk)]}
    )

    assert texted.status_code == templated.status_code == 201, (texted.json(), templated.json())
    [text_message] = Message.objects.filter(broadcast_id=texted.json()["data"]["id"])
    assert text_message.body == 'Hi Zoë \\N {0} O\'Brien,\tsee C:\\new\\table {x} {} "quoted" \\N 🎉\nline two'
    [template_message] = Message.objects.filter(broadcast_id=templated.json()["data"]["id"])
    # A template parameter's whitespace is folded to single spaces (Meta refuses tabs there).
    assert template_message.template_params == ["Zoë \\N {0} O'Brien", "Tab here \\ {}"]
    assert template_message.body == "Dear Zoë \\N {0} O'Brien: Tab here \\ {}"
    assert (text_message.status, template_message.status) == ("queued", "queued")


def test_unknown_variables_are_refused_and_nothing_is_created(account, create):
    lead = open_lead(account)
    approved_template(account)
    response = create({"message": "Hi {{nmae}}", "leadIds": [str(lead.pk)]})
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert "{{nmae}}" in body["errors"]["message"][0]
    response = create(
        {"template": {"name": "offer", "params": ["{{name}}", "{{discount}}"]}, "leadIds": [str(lead.pk)]}
    )
    assert "{{discount}}" in assert_error(response, 400, "VALIDATION_ERROR")["errors"]["template"][0]
    assert nothing_created()


def test_a_template_must_be_approved_and_get_its_number_of_parameters(account, create):
    lead = open_lead(account)
    approved_template(account)
    Template.objects.create(account=account, name="paused", status=Template.Status.PAUSED, is_sandbox=True)
    assert_error(create({"template": {"name": "paused"}, "leadIds": [str(lead.pk)]}), 400, "TEMPLATE_NOT_APPROVED")
    assert_error(create({"template": {"name": "nope"}, "leadIds": [str(lead.pk)]}), 400, "TEMPLATE_NOT_APPROVED")
    body = assert_error(
        create({"template": {"name": "offer", "params": ["{{name}}"]}, "leadIds": [str(lead.pk)]}),
        400,
        "VALIDATION_ERROR",
    )
    assert "takes 2 parameter(s); 1 given" in body["errors"]["template"][0]
    assert nothing_created()


def test_the_sandbox_templates_work_without_a_connection(account, create, task_queue):
    lead = LeadFactory(account=account, name="Asha Rao")  # window closed: only a template reaches her
    response = create({"template": {"name": "hello_world", "params": ["{{first_name}}"]}, "leadIds": [str(lead.pk)]})
    assert response.status_code == 201, response.json()
    [message] = Message.objects.filter(broadcast_id=response.json()["data"]["id"])
    assert (message.provider, message.body) == ("sandbox", "Hello from Asha!")


# --- Audiences and filters ------------------------------------------------------------------------


@pytest.fixture
def crowd(account, owner, agent):
    vip = TagFactory(account=account, name="VIP")
    expo = TagFactory(account=account, name="Expo 2026")
    other = TagFactory(account=account, name="Other")
    return {
        "vip": vip,
        "expo": expo,
        "hot_vip": open_lead(account, segment="hot", tags=[vip], source="Website"),
        "warm_expo": open_lead(account, segment="warm", tags=[expo, vip], status="qualified", source="Expo"),
        "cold_other": open_lead(account, segment="cold", tags=[other], assigned_to=agent, source="website"),
        "hot_agent": open_lead(account, segment="hot", assigned_to=agent, status="qualified"),
        "untagged_owner": open_lead(account, assigned_to=owner, source="Referral"),
    }


@pytest.mark.parametrize(
    ("audience_filter", "expected"),
    [
        ({}, {"hot_vip", "warm_expo", "cold_other", "hot_agent", "untagged_owner"}),
        ({"segment": "hot"}, {"hot_vip", "hot_agent"}),
        ({"segment": ["hot", "warm"]}, {"hot_vip", "warm_expo", "hot_agent"}),
        ({"status": "qualified"}, {"warm_expo", "hot_agent"}),
        ({"tags": ["vip"]}, {"hot_vip", "warm_expo"}),  # names in any case
        ({"tags": ["Expo 2026", "Other"]}, {"warm_expo", "cold_other"}),  # any of, each lead once
        ({"tag": "VIP", "segment": "hot"}, {"hot_vip"}),  # the lead list's single `tag` too
        ({"source": "WEBSITE"}, {"hot_vip", "cold_other"}),
        ({"assignedTo": "unassigned", "segment": ["hot", "warm"]}, {"hot_vip", "warm_expo"}),
        ({"assignedTo": "me"}, {"untagged_owner"}),
        ({"segment": "cold", "tags": ["VIP"]}, set()),
    ],
)
def test_filters_pick_the_audience(crowd, owner_client, audience_filter, expected):
    response = owner_client.post(f"{URL}/audience", {"filter": audience_filter}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "success": True,
        "data": {"matched": len(expected), "recipients": len(expected), "optedOut": 0, "windowClosed": 0},
    }
    if expected:
        created = owner_client.post(URL, {"message": "Hi", "filter": audience_filter}, format="json")
        assert created.status_code == 201, created.json()
        reached = set(Message.objects.filter(broadcast_id=created.json()["data"]["id"]).values_list("lead", flat=True))
        assert reached == {crowd[key].pk for key in expected}


def test_tags_by_id_and_an_assignee_by_id(crowd, owner_client, agent):
    response = owner_client.post(
        f"{URL}/audience", {"filter": {"tags": [crowd["expo"].pk], "assignedTo": str(agent.pk)}}, format="json"
    )
    assert response.json()["data"]["matched"] == 0
    response = owner_client.get(f"{URL}/audience", {"tags": f"{crowd['expo'].pk},Other", "assignedTo": str(agent.pk)})
    assert response.status_code == 200, response.json()
    assert response.json()["data"]["matched"] == 1  # cold_other


def test_the_audience_count_answers_opted_out_and_closed_windows_and_creates_nothing(account, owner_client):
    open_lead(account, segment="hot")
    open_lead(account, segment="hot", is_opted_out=True)
    LeadFactory(account=account, segment="hot")  # never wrote
    LeadFactory(account=account, segment="cold")
    response = owner_client.get(f"{URL}/audience", {"segment": "hot"})
    assert response.json() == {
        "success": True,
        "data": {"matched": 3, "recipients": 2, "optedOut": 1, "windowClosed": 1},
    }
    assert nothing_created()


def test_a_scheduled_audience_is_evaluated_when_it_starts(account, owner, create, task_queue):
    vip = TagFactory(account=account, name="VIP")
    early = open_lead(account, tags=[vip])
    leaves = open_lead(account, tags=[vip])
    response = create(
        {
            "message": "Hi {{name}}",
            "filter": {"tags": ["VIP"]},
            "scheduledAt": (timezone.now() + timedelta(hours=2)).isoformat(),
        }
    )
    data = response.json()["data"]
    assert (response.status_code, data["status"], data["recipients"]) == (201, "scheduled", 0)
    assert not Message.objects.filter(broadcast_id=data["id"]).exists()

    joins = open_lead(account, tags=[vip])
    leaves.tags.clear()
    opts_out = open_lead(account, tags=[vip])
    Lead.objects.filter(pk=opts_out.pk).update(is_opted_out=True)
    Broadcast.objects.filter(pk=data["id"]).update(scheduled_at=timezone.now() - timedelta(seconds=1))  # time passes

    assert services.broadcasts_start_due() == 1
    broadcast = Broadcast.objects.get(pk=data["id"])
    assert (broadcast.status, broadcast.recipients, broadcast.skipped_opted_out) == ("sending", 2, 1)
    assert set(Message.objects.filter(broadcast=broadcast).values_list("lead", flat=True)) == {early.pk, joins.pk}


# --- Ugly input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"message": "Hi", "leadIds": "not-a-list"}, "leadIds"),
        ({"message": "Hi", "leadIds": ["not-a-uuid"]}, "leadIds"),
        ({"message": "Hi", "leadIds": []}, "leadIds"),
        ({"message": "Hi", "leadIds": [12]}, "leadIds"),
        ({"message": "Hi", "filter": []}, "filter"),
        ({"message": "Hi", "filter": "hot"}, "filter"),
        ({"message": "Hi", "filter": {"segment": "boiling"}}, "filter"),
        ({"message": "Hi", "filter": {"status": ["pending", 7]}}, "filter"),
        ({"message": "Hi", "filter": {"tags": [True]}}, "filter"),
        ({"message": "Hi", "filter": {"tags": [2**70]}}, "filter"),
        ({"message": "Hi", "filter": {"tags": [-1, 0]}}, "filter"),
        ({"message": "Hi", "filter": {"tags": ["x" * 51]}}, "filter"),
        ({"message": "Hi", "filter": {"assignedTo": "nobody"}}, "filter"),
        ({"message": "Hi", "filter": {"status": []}}, "filter"),
        ({"message": "Hi", "filter": {"tags": "VIP"}}, "filter"),
        ({"message": "Hi", "filter": {"segmnt": "hot"}}, "filter"),  # a typo must not mean "everyone"
        ({"message": "Hi", "filter": {}, "scheduledat": "2030-01-01T00:00:00Z"}, "scheduledat"),
        ({"message": "Hi", "filter": {}, "scheduledAt": "tomorrow"}, "scheduledAt"),
        ({"message": "Hi", "filter": {}, "scheduledAt": 1767225600}, "scheduledAt"),
        ({"message": "Hi", "filter": {}, "scheduledAt": "2026-02-30T10:00:00Z"}, "scheduledAt"),
        ({"message": "Hi", "filter": {}, "draft": "maybe"}, "draft"),
        ({"message": "Hi", "filter": {}, "name": {"x": 1}}, "name"),
        ({"message": "Hi", "filter": {}, "name": "n" * 201}, "name"),
        ({"message": 42, "filter": {}}, "message"),
        ({"message": True, "filter": {}}, "message"),
        ({"message": "Hi", "filter": {}, "name": 42}, "name"),
        ({"message": "Hi", "filter": {"source": 5}}, "filter"),
        ({"message": "Hi", "filter": {"assignedTo": ["me"]}}, "filter"),
        ({"message": ["Hi"], "filter": {}}, "message"),
        ({"message": "x" * 4097, "filter": {}}, "message"),
        ({"message": "", "filter": {}}, "message"),
        ({"filter": {}}, "message"),
        ({"message": "Hi", "template": {"name": "offer"}, "filter": {}}, "message"),
        ({"template": "offer", "filter": {}}, "template"),
        ({"template": {"name": "offer", "params": "x"}, "filter": {}}, "template"),
        ({"template": {"name": "offer", "params": [{"a": 1}]}, "filter": {}}, "template"),
        ({"message": "Hi"}, "leadIds"),
        ({"message": "Hi", "filter": {}, "leadIds": [str(uuid.uuid4())]}, "leadIds"),
    ],
)
def test_bad_input_is_a_validation_error_and_creates_nothing(account, create, body, field):
    open_lead(account)
    approved_template(account)
    response = create(body)
    errors = assert_error(response, 400, "VALIDATION_ERROR")["errors"]
    assert field in errors, errors
    assert nothing_created()


def test_not_json_at_all_is_refused(owner_client):
    response = owner_client.post(URL, "{not json", content_type="application/json")
    assert_error(response, 400, "INVALID_JSON")
    response = owner_client.post(URL, [1, 2], format="json")
    assert_error(response, 400, "VALIDATION_ERROR")
    assert nothing_created()


def test_a_ten_megabyte_message_is_refused(account, owner_client):
    lead = open_lead(account)
    response = owner_client.post(URL, {"message": "x" * 10_000_000, "leadIds": [str(lead.pk)]}, format="json")
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")  # DATA_UPLOAD_MAX_MEMORY_SIZE, 2 MiB
    # Under that limit, the text's own limit: 4,096 characters.
    response = owner_client.post(URL, {"message": "x" * 1_000_000, "leadIds": [str(lead.pk)]}, format="json")
    assert "message" in assert_error(response, 400, "VALIDATION_ERROR")["errors"]
    assert nothing_created()


def test_more_lead_ids_than_the_maximum_are_refused(account, create):
    lead = open_lead(account)
    ids = [str(lead.pk)] + [str(uuid.uuid4()) for _ in range(MAX_LEAD_IDS)]
    body = assert_error(create({"message": "Hi", "leadIds": ids}), 400, "VALIDATION_ERROR")
    assert "leadIds" in body["errors"]
    assert nothing_created()


def test_an_audience_nobody_can_receive_is_refused(account, create):
    opted_out = open_lead(account, is_opted_out=True, segment="cold")
    body = assert_error(create({"message": "Hi", "leadIds": [str(opted_out.pk)]}), 400, "VALIDATION_ERROR")
    assert "1 opted out" in body["errors"]["leadIds"][0]
    assert_error(create({"message": "Hi", "filter": {"segment": "hot"}}), 400, "VALIDATION_ERROR")
    assert_error(create({"message": "Hi", "filter": {"segment": "cold"}, "draft": True}), 400, "VALIDATION_ERROR")
    assert nothing_created()


def test_duplicate_lead_ids_make_one_message_each(account, create, task_queue):
    lead = open_lead(account)
    response = create({"message": "Hi", "leadIds": [str(lead.pk), str(lead.pk).upper(), str(lead.pk)]})
    assert response.json()["data"]["recipients"] == 1
    assert Message.objects.filter(lead=lead).count() == 1


def test_a_large_audience_is_snapshotted_by_a_worker(
    account, owner_client, create, task_queue, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(services, "SNAPSHOT_INLINE_MAX", 2)
    leads = [open_lead(account) for _ in range(3)]
    response = create({"message": "Hi", "filter": {}})
    data = response.json()["data"]
    assert (response.status_code, data["status"], data["recipients"]) == (201, "scheduled", 0)
    assert task_queue == [("campaigns.tasks.broadcasts.start", (data["id"],))]
    with django_capture_on_commit_callbacks(execute=True):
        run_tasks(task_queue)  # the start: it queues the delivery when it commits
    run_tasks(task_queue)  # the delivery batch
    detail = owner_client.get(url(data["id"])).json()["data"]
    assert (detail["status"], detail["recipients"], detail["totals"]["sent"]) == ("completed", 3, 3)
    assert set(Message.objects.filter(broadcast_id=data["id"]).values_list("lead", flat=True)) == {
        lead.pk for lead in leads
    }


def test_text_with_tabs_new_lines_backslashes_and_emoji_is_stored_as_written(account, create, task_queue):
    lead = open_lead(account, name='Zoë \\ "Z"\tTab')
    template = approved_template(account, body="{{1}} / {{2}}")
    text = "Line one\nLine two\twith a tab, a backslash \\ and 🎉 for {{name}}\nend"
    response = create({"message": text, "leadIds": [str(lead.pk)]})
    [message] = Message.objects.filter(broadcast_id=response.json()["data"]["id"])
    assert message.body == text.replace("{{name}}", lead.name)
    response = create(
        {"template": {"name": template.name, "params": ["{{name}}", 'a\\b "c"']}, "leadIds": [str(lead.pk)]}
    )
    [message] = Message.objects.filter(broadcast_id=response.json()["data"]["id"])
    assert message.template_params == ['Zoë \\ "Z" Tab', 'a\\b "c"']  # whitespace collapsed for Meta
    assert message.body == 'Zoë \\ "Z" Tab / a\\b "c"'
    assert (message.media, message.attempts, message.claimed_at, message.wamid) == ({}, 0, None, None)


# --- Scheduling and time zones --------------------------------------------------------------------


def test_scheduled_at_with_an_offset_schedules_a_one_off_start(account, create, task_queue, monkeypatch):
    monkeypatch.setattr("campaigns.services._dispatcher_seen_until", 0.0)  # an earlier test's database is gone
    lead = open_lead(account)
    when = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    response = create(
        {
            "message": "Hi",
            "leadIds": [str(lead.pk)],
            "scheduledAt": when.astimezone(zoneinfo.ZoneInfo("Asia/Tokyo")).isoformat(),
        }
    )
    data = response.json()["data"]
    assert (response.status_code, data["status"]) == (201, "scheduled")
    assert data["scheduledAt"] == when.isoformat().replace("+00:00", "Z")
    [start] = Schedule.objects.filter(func="campaigns.tasks.broadcasts.start")
    assert start.next_run == when and start.schedule_type == Schedule.ONCE
    assert start.args == repr((data["id"],))
    assert Schedule.objects.filter(func="campaigns.tasks.dispatch_due").exists()  # the minute dispatcher
    assert not Message.objects.filter(broadcast_id=data["id"]).exists()

    # The one-off start at its time: not before.
    assert tasks.start(data["id"]) is False
    Broadcast.objects.filter(pk=data["id"]).update(scheduled_at=timezone.now())
    assert tasks.start(data["id"]) is True
    assert tasks.start(data["id"]) is False  # a duplicate run
    assert Message.objects.filter(broadcast_id=data["id"]).count() == 1


def test_a_naive_scheduled_at_is_read_in_the_accounts_time_zone(account, create):
    account.time_zone = "Asia/Kolkata"
    account.save()
    lead = open_lead(account)
    local = (timezone.now() + timedelta(days=1)).astimezone(zoneinfo.ZoneInfo("Asia/Kolkata")).replace(microsecond=0)
    response = create(
        {"message": "Hi", "leadIds": [str(lead.pk)], "scheduledAt": local.replace(tzinfo=None).isoformat()}
    )
    broadcast = Broadcast.objects.get(pk=response.json()["data"]["id"])
    assert broadcast.scheduled_at == local
    assert broadcast.status == "scheduled"


def test_a_scheduled_at_in_the_past_sends_now_and_far_ahead_is_refused(account, create, task_queue):
    lead = open_lead(account)
    response = create({"message": "Hi", "leadIds": [str(lead.pk)], "scheduledAt": "2001-01-01T00:00:00Z"})
    assert response.json()["data"]["status"] == "sending"
    assert response.json()["data"]["recipients"] == 1
    far = (timezone.now() + timedelta(days=400)).isoformat()
    assert_error(create({"message": "Hi", "leadIds": [str(lead.pk)], "scheduledAt": far}), 400, "VALIDATION_ERROR")


def test_the_dispatcher_starts_due_broadcasts_once(account, create, task_queue):
    lead = open_lead(account)
    response = create(
        {"message": "Hi", "leadIds": [str(lead.pk)], "scheduledAt": (timezone.now() + timedelta(minutes=5)).isoformat()}
    )
    broadcast_id = response.json()["data"]["id"]
    assert dispatch_due()["broadcasts"] == 0  # not due yet
    Broadcast.objects.filter(pk=broadcast_id).update(scheduled_at=timezone.now() - timedelta(seconds=5))
    assert dispatch_due()["broadcasts"] == 1
    assert dispatch_due()["broadcasts"] == 0
    assert tasks.start(broadcast_id) is False
    assert Message.objects.filter(broadcast_id=broadcast_id).count() == 1


def test_a_template_no_longer_approved_at_start_fails_the_broadcast(account, create, task_queue):
    template = approved_template(account)
    lead = open_lead(account)
    response = create(
        {
            "template": {"name": "offer", "params": ["{{name}}", "10%"]},
            "leadIds": [str(lead.pk)],
            "scheduledAt": (timezone.now() + timedelta(hours=1)).isoformat(),
        }
    )
    broadcast_id = response.json()["data"]["id"]
    Template.objects.filter(pk=template.pk).update(status=Template.Status.PAUSED)
    Broadcast.objects.filter(pk=broadcast_id).update(scheduled_at=timezone.now())
    assert services.broadcasts_start_due() == 1
    broadcast = Broadcast.objects.get(pk=broadcast_id)
    assert broadcast.status == "failed"
    assert "PAUSED" in broadcast.error
    assert broadcast.finished_at is not None
    assert not Message.objects.filter(broadcast=broadcast).exists()


def test_an_audience_emptied_before_the_start_fails_with_the_reason(account, create, task_queue):
    vip = TagFactory(account=account, name="VIP")
    lead = open_lead(account, tags=[vip])
    response = create(
        {
            "message": "Hi",
            "filter": {"tags": [vip.pk]},
            "scheduledAt": (timezone.now() + timedelta(hours=1)).isoformat(),
        }
    )
    lead.tags.clear()
    Broadcast.objects.filter(pk=response.json()["data"]["id"]).update(scheduled_at=timezone.now())
    services.broadcasts_start_due()
    broadcast = Broadcast.objects.get(pk=response.json()["data"]["id"])
    assert (broadcast.status, broadcast.error) == ("failed", "No lead matched the audience when the broadcast started.")


# --- Drafts ---------------------------------------------------------------------------------------


def test_a_draft_is_saved_then_sent_once(account, owner_client, create, task_queue, django_capture_on_commit_callbacks):
    lead = open_lead(account)
    response = create({"message": "Hi {{name}}", "leadIds": [str(lead.pk)], "draft": True})
    data = response.json()["data"]
    assert (response.status_code, data["status"], data["recipients"]) == (201, "draft", 0)
    assert not Message.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        sent = owner_client.post(url(data["id"], "send"), {}, format="json")
    assert sent.status_code == 200, sent.json()
    assert sent.json()["data"]["status"] == "sending"
    assert sent.json()["data"]["totals"]["queued"] == 1
    again = owner_client.post(url(data["id"], "send"), {}, format="json")
    assert_error(again, 400, "INVALID_BROADCAST_STATE")
    assert Message.objects.filter(lead=lead).count() == 1


def test_a_draft_can_be_sent_for_later(account, owner_client, create):
    lead = open_lead(account)
    draft = create({"message": "Hi", "leadIds": [str(lead.pk)], "draft": True}).json()["data"]
    when = (timezone.now() + timedelta(hours=3)).replace(microsecond=0)
    response = owner_client.post(url(draft["id"], "send"), {"scheduledAt": when.isoformat()}, format="json")
    assert response.json()["data"]["status"] == "scheduled"
    assert Broadcast.objects.get(pk=draft["id"]).scheduled_at == when
    assert_error(
        owner_client.post(url(draft["id"], "send"), {"scheduledAt": "soon"}, format="json"), 400, "VALIDATION_ERROR"
    )


# --- Cancel ---------------------------------------------------------------------------------------


def test_cancelling_a_scheduled_broadcast_means_it_never_starts(account, owner_client, create):
    lead = open_lead(account)
    data = create(
        {"message": "Hi", "leadIds": [str(lead.pk)], "scheduledAt": (timezone.now() + timedelta(hours=1)).isoformat()}
    ).json()["data"]
    response = owner_client.post(url(data["id"], "cancel"))
    assert response.status_code == 200, response.json()
    assert response.json()["data"]["status"] == "cancelled"
    assert response.json()["data"]["finishedAt"] is not None
    assert not Schedule.objects.filter(func="campaigns.tasks.broadcasts.start").exists()
    Broadcast.objects.filter(pk=data["id"]).update(scheduled_at=timezone.now() - timedelta(minutes=1))
    assert services.broadcasts_start_due() == 0
    assert tasks.start(data["id"]) is False
    assert not Message.objects.exists()
    # Cancelling again changes nothing.
    assert owner_client.post(url(data["id"], "cancel")).json()["data"]["status"] == "cancelled"


def test_cancelling_a_sending_broadcast_drops_unclaimed_messages_in_one_statement(
    account, owner_client, create, task_queue, settings, django_assert_max_num_queries
):
    leads = [open_lead(account) for _ in range(5)]
    data = create({"message": "Hi", "leadIds": [str(lead.pk) for lead in leads]}).json()["data"]
    messages = list(Message.objects.filter(broadcast_id=data["id"]).order_by("pk"))
    sent, in_flight, abandoned = messages[0], messages[1], messages[2]
    now = timezone.now()
    Message.objects.filter(pk=sent.pk).update(status="sent", wamid="wamid.A", sent_at=now)
    Message.objects.filter(pk=in_flight.pk).update(claimed_at=now)  # a worker is sending it right now
    Message.objects.filter(pk=abandoned.pk).update(
        claimed_at=now - timedelta(seconds=settings.MESSAGE_CLAIM_TIMEOUT + 5)
    )

    broadcast = Broadcast.objects.get(pk=data["id"])
    with CaptureQueriesContext(connection) as queries:
        services.broadcast_cancel(broadcast=broadcast)
    assert sum(1 for q in queries.captured_queries if q["sql"].upper().startswith("DELETE")) == 1

    response = owner_client.get(url(data["id"]))
    data = response.json()["data"]
    assert data["status"] == "cancelled"
    assert data["cancelledUnsent"] == 3  # two never claimed, one whose worker died
    assert data["totals"] == {"queued": 1, "sent": 1, "delivered": 0, "read": 0, "failed": 0}
    assert set(Message.objects.filter(broadcast_id=data["id"]).values_list("pk", flat=True)) == {sent.pk, in_flight.pk}
    # The in-flight message finishes; the cancelled broadcast is not "completed" by it.
    run_tasks(task_queue)
    assert Broadcast.objects.get(pk=data["id"]).status == "cancelled"


def test_a_finished_broadcast_cannot_be_cancelled(account, owner_client, create, task_queue):
    lead = open_lead(account)
    data = create({"message": "Hi", "leadIds": [str(lead.pk)]}).json()["data"]
    run_tasks(task_queue)  # sandbox: sent at once
    assert owner_client.get(url(data["id"])).json()["data"]["status"] == "completed"
    assert_error(owner_client.post(url(data["id"], "cancel")), 400, "INVALID_BROADCAST_STATE")


# --- Details, list, counts ------------------------------------------------------------------------


def test_totals_count_each_status_and_opt_outs_at_send_are_not_failures(account, owner_client, create, task_queue):
    leads = [open_lead(account) for _ in range(7)]
    data = create({"message": "Hi", "leadIds": [str(lead.pk) for lead in leads]}).json()["data"]
    messages = list(Message.objects.filter(broadcast_id=data["id"]).order_by("pk"))
    for message, (status, code) in zip(
        messages,
        [("sent", ""), ("delivered", ""), ("read", ""), ("read", ""), ("failed", "131026"), ("failed", "OPT_OUT")],
        strict=False,
    ):
        Message.objects.filter(pk=message.pk).update(status=status, error_code=code)
    data = owner_client.get(url(data["id"])).json()["data"]
    assert data["totals"] == {"queued": 1, "sent": 1, "delivered": 1, "read": 2, "failed": 1}
    assert data["skippedOptedOut"] == 1
    assert data["recipients"] == 7


def test_the_detail_costs_a_constant_number_of_queries(
    account, owner_client, create, task_queue, django_assert_max_num_queries
):
    small = create({"message": "Hi", "leadIds": [str(open_lead(account).pk)]}).json()["data"]
    large = create({"message": "Hi", "leadIds": [str(open_lead(account).pk) for _ in range(40)]}).json()["data"]
    with CaptureQueriesContext(connection) as one:
        owner_client.get(url(small["id"]))
    with django_assert_max_num_queries(len(one.captured_queries)):
        response = owner_client.get(url(large["id"]))
    assert response.json()["data"]["totals"]["queued"] == 40


def test_the_list_pages_filters_by_status_and_costs_a_constant_number_of_queries(
    account, owner, owner_client, django_assert_max_num_queries
):
    def make(n: int, status: str) -> None:
        for i in range(n):
            broadcast = Broadcast.objects.create(
                account=account, name=f"{status} {i}", text="Hi", status=status, created_by=owner
            )
            lead = open_lead(account)
            Message.objects.create(account=account, lead=lead, direction="outbound", status="sent", broadcast=broadcast)

    make(2, "completed")
    owner_client.get(URL)  # the rate-limit counter exists from now on: both requests below cost the same
    with CaptureQueriesContext(connection) as few:
        owner_client.get(URL, {"limit": 50})
    make(20, "sending")
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = owner_client.get(URL, {"limit": 50})
    body = response.json()
    assert body["pagination"] == {"page": 1, "limit": 50, "total": 22, "pages": 1}
    assert all(item["totals"]["sent"] == 1 for item in body["data"])
    assert [item["createdAt"] for item in body["data"]] == sorted(
        (item["createdAt"] for item in body["data"]), reverse=True
    )

    response = owner_client.get(URL, {"status": "completed", "limit": 1, "page": 2})
    assert response.json()["pagination"] == {"page": 2, "limit": 1, "total": 2, "pages": 2}
    assert [item["status"] for item in response.json()["data"]] == ["completed"]
    assert_error(owner_client.get(URL, {"status": "exploded"}), 400, "VALIDATION_ERROR")
    assert_error(owner_client.get(URL, {"page": "zero"}), 400, "VALIDATION_ERROR")


# --- Roles and tenancy ----------------------------------------------------------------------------


@pytest.fixture
def world(account, owner, agent, other_account, outsider):
    """Two accounts x two roles, a broadcast by each of account A's users, and one of B's."""
    other_agent = UserFactory(account=other_account, email="agent@globex.test", role=User.Role.AGENT)
    mine = open_lead(account, assigned_to=agent)
    theirs = open_lead(other_account)

    def broadcast(user, status="scheduled"):
        return Broadcast.objects.create(
            account=user.account,
            name=f"by {user.email}",
            text="Hi",
            audience={"filter": {}},
            status=status,
            scheduled_at=timezone.now() + timedelta(hours=1),
            created_by=user,
        )

    return {
        "users": {"owner": owner, "agent": agent, "outsider": outsider, "outsider_agent": other_agent},
        "broadcasts": {"owner": broadcast(owner), "agent": broadcast(agent), "outsider": broadcast(outsider)},
        "drafts": {
            "owner": broadcast(owner, "draft"),
            "agent": broadcast(agent, "draft"),
            "outsider": broadcast(outsider, "draft"),
        },
        "leads": {"mine": mine, "theirs": theirs},
    }


# Who may see whose broadcast: admins the account's, agents their own.
VISIBLE = {
    "owner": {"owner", "agent"},
    "agent": {"agent"},
    "outsider": {"outsider"},
    "outsider_agent": set(),
}


@pytest.mark.parametrize("who", ["owner", "agent", "outsider", "outsider_agent"])
def test_every_route_answers_404_for_broadcasts_the_user_may_not_see(world, who, django_capture_on_commit_callbacks):
    client = bearer_client(world["users"][who])
    listed = {item["id"] for item in client.get(URL).json()["data"]}
    assert listed == {str(world["broadcasts"][k].pk) for k in VISIBLE[who]} | {
        str(world["drafts"][k].pk) for k in VISIBLE[who]
    }
    for owner_key, broadcast in world["broadcasts"].items():
        draft = world["drafts"][owner_key]
        visible = owner_key in VISIBLE[who]
        detail = client.get(url(broadcast))
        with django_capture_on_commit_callbacks(execute=True):
            sent = client.post(
                url(draft, "send"), {"scheduledAt": (timezone.now() + timedelta(hours=2)).isoformat()}, format="json"
            )
        cancelled = client.post(url(broadcast, "cancel"))
        if visible:
            assert detail.status_code == 200 and detail.json()["data"]["id"] == str(broadcast.pk)
            assert sent.status_code == 200, sent.json()
            assert cancelled.status_code == 200 and cancelled.json()["data"]["status"] == "cancelled"
        else:
            for response in (detail, sent, cancelled):
                assert_error(response, 404, "NOT_FOUND")
            assert Broadcast.objects.get(pk=broadcast.pk).status == "scheduled"
            assert Broadcast.objects.get(pk=draft.pk).status == "draft"
    for bad in ("not-a-uuid", uuid.uuid4()):
        assert_error(client.get(url(bad)), 404, "NOT_FOUND")
        assert_error(client.post(url(bad, "cancel")), 404, "NOT_FOUND")
        assert_error(client.post(url(bad, "send"), {}, format="json"), 404, "NOT_FOUND")


@pytest.mark.parametrize("who", ["owner", "agent", "outsider", "outsider_agent"])
def test_nobody_can_broadcast_to_or_count_another_accounts_leads_tags_or_users(world, who, account):
    client = bearer_client(world["users"][who])
    home = world["users"][who].account_id == account.pk
    foreign_lead = world["leads"]["theirs"] if home else world["leads"]["mine"]
    foreign_tag = TagFactory(account=world["leads"]["theirs" if home else "mine"].account, name="Foreign")
    foreign_user = world["users"]["outsider"] if home else world["users"]["owner"]
    before = Broadcast.objects.count()
    for audience in (
        {"leadIds": [str(foreign_lead.pk)]},
        {"filter": {"tags": [foreign_tag.pk]}},
        {"filter": {"tags": ["Foreign"]}},  # a name is looked up in the user's own account
        {"filter": {"assignedTo": str(foreign_user.pk)}},
    ):
        assert_error(client.post(URL, {"message": "Hi", **audience}, format="json"), 400, "VALIDATION_ERROR")
        assert_error(client.post(f"{URL}/audience", audience, format="json"), 400, "VALIDATION_ERROR")
    assert Broadcast.objects.count() == before
    assert not Message.objects.filter(lead=foreign_lead).exists()


def test_agents_reach_only_the_leads_they_may_see(account, agent, agent_client, owner, create, task_queue):
    colleague = UserFactory(account=account, role=User.Role.AGENT)
    mine = open_lead(account, assigned_to=agent)
    unassigned = open_lead(account)
    colleagues = open_lead(account, assigned_to=colleague)
    owners = open_lead(account, assigned_to=owner)

    body = assert_error(
        create({"message": "Hi", "leadIds": [str(mine.pk), str(colleagues.pk)]}, agent_client), 400, "VALIDATION_ERROR"
    )
    assert str(colleagues.pk) in body["errors"]["leadIds"][0]
    assert agent_client.get(f"{URL}/audience").json()["data"]["matched"] == 2

    response = create({"message": "Hi", "filter": {}}, agent_client)
    assert response.status_code == 201
    reached = set(Message.objects.filter(broadcast_id=response.json()["data"]["id"]).values_list("lead", flat=True))
    assert reached == {mine.pk, unassigned.pk}
    assert owners.pk not in reached and colleagues.pk not in reached


def test_anonymous_requests_are_refused(api_client):
    for response in (api_client.get(URL), api_client.post(URL, {}, format="json"), api_client.get(url(uuid.uuid4()))):
        assert_error(response, 401, "NOT_AUTHENTICATED")


def test_routes_answer_with_and_without_a_trailing_slash(account, owner_client, create):
    lead = open_lead(account)
    data = create({"message": "Hi", "leadIds": [str(lead.pk)], "draft": True}).json()["data"]
    assert owner_client.get(f"{URL}/").status_code == 200
    assert owner_client.get(url(data["id"]) + "/").status_code == 200
    assert owner_client.post(f"{URL}/audience/", {"filter": {}}, format="json").status_code == 200
    assert owner_client.post(url(data["id"], "cancel") + "/").json()["data"]["status"] == "cancelled"


# --- Snapshot cost --------------------------------------------------------------------------------


def _scheduled(account, owner, n: int) -> Broadcast:
    for _ in range(n):
        open_lead(account)
    Lead.objects.filter(account=account).update(segment="hot")
    return Broadcast.objects.create(
        account=account,
        name=f"{n} leads",
        text="Hi {{name}} from {{assigned_to}}",
        audience={"filter": {"segment": ["hot"]}},
        status="scheduled",
        scheduled_at=timezone.now(),
        created_by=owner,
    )


def test_snapshot_queries_do_not_grow_with_the_audience(account, owner, django_assert_max_num_queries):
    few = _scheduled(account, owner, 3)
    with CaptureQueriesContext(connection) as counted:
        assert services.broadcast_start(broadcast_id=few.pk)
    Lead.objects.all().delete()
    many = _scheduled(account, owner, 30)  # still one chunk, on SQLite too
    assert services.snapshot_chunk_size() >= 30
    with django_assert_max_num_queries(len(counted.captured_queries)):
        assert services.broadcast_start(broadcast_id=many.pk)
    assert Broadcast.objects.get(pk=many.pk).recipients == 30


def test_snapshot_costs_two_queries_per_chunk(account, owner, monkeypatch, django_assert_max_num_queries):
    monkeypatch.setattr(services, "SNAPSHOT_CHUNK", 5)
    one_chunk = _scheduled(account, owner, 5)
    with CaptureQueriesContext(connection) as counted:
        services.broadcast_start(broadcast_id=one_chunk.pk)
    Lead.objects.all().delete()
    five_chunks = _scheduled(account, owner, 23)
    with django_assert_max_num_queries(len(counted.captured_queries) + 2 * 4):
        services.broadcast_start(broadcast_id=five_chunks.pk)
    assert Message.objects.filter(broadcast=five_chunks).count() == 23  # no lead lost or doubled between chunks


def test_lead_id_audiences_are_chunked_too(account, owner, monkeypatch):
    monkeypatch.setattr(services, "SNAPSHOT_CHUNK", 4)
    leads = [open_lead(account) for _ in range(11)]
    broadcast = Broadcast.objects.create(
        account=account,
        text="Hi",
        audience={"leadIds": [str(lead.pk) for lead in leads]},
        status="scheduled",
        scheduled_at=timezone.now(),
        created_by=owner,
    )
    services.broadcast_start(broadcast_id=broadcast.pk)
    assert set(Message.objects.filter(broadcast=broadcast).values_list("lead", flat=True)) == {
        lead.pk for lead in leads
    }


# --- Delivery against the fake Graph API ----------------------------------------------------------


def sends_to(fake_graph) -> Counter:
    return Counter(body["to"] for body in fake_graph.sent_messages())


def test_a_broadcast_is_delivered_once_per_lead_and_completes(
    account, whatsapp_connection, fake_graph, owner_client, create, task_queue
):
    leads = [open_lead(account) for _ in range(4)]
    data = create({"message": "Hi {{first_name}}", "leadIds": [str(lead.pk) for lead in leads]}).json()["data"]
    assert data["status"] == "sending"
    queued = list(task_queue)
    run_tasks(task_queue)
    # django-q2 may hand the same batch out again: nothing is sent twice.
    task_queue.extend(queued)
    run_tasks(task_queue)

    assert sends_to(fake_graph) == Counter(lead.phone.lstrip("+") for lead in leads)
    texts = {body["to"]: body["text"]["body"] for body in fake_graph.sent_messages()}
    assert texts == {lead.phone.lstrip("+"): f"Hi {lead.name.split()[0]}" for lead in leads}
    detail = owner_client.get(url(data["id"])).json()["data"]
    assert detail["status"] == "completed"
    assert detail["finishedAt"] is not None
    assert detail["totals"] == {"queued": 0, "sent": 4, "delivered": 0, "read": 0, "failed": 0}


def test_opted_out_leads_get_nothing_at_the_snapshot_or_mid_broadcast(
    account, whatsapp_connection, fake_graph, owner_client, create, task_queue
):
    stays = [open_lead(account) for _ in range(3)]
    before = open_lead(account, is_opted_out=True)
    midway = open_lead(account)
    data = create({"message": "Hi", "leadIds": [str(lead.pk) for lead in [*stays, before, midway]]}).json()["data"]
    assert (data["recipients"], data["skippedOptedOut"]) == (4, 1)

    # The lead texts STOP after the snapshot, before the worker reaches their message.
    Lead.objects.filter(pk=midway.pk).update(is_opted_out=True, opted_out_at=timezone.now())
    run_tasks(task_queue)

    reached = sends_to(fake_graph)
    assert reached == Counter(lead.phone.lstrip("+") for lead in stays)
    assert before.phone.lstrip("+") not in reached and midway.phone.lstrip("+") not in reached
    detail = owner_client.get(url(data["id"])).json()["data"]
    assert detail["skippedOptedOut"] == 2
    assert detail["totals"] == {"queued": 0, "sent": 3, "delivered": 0, "read": 0, "failed": 0}
    assert detail["status"] == "completed"
    assert Message.objects.get(lead=midway).error_code == "OPT_OUT"


def test_metas_throughput_errors_put_the_rest_of_a_batch_back_for_later(
    account, whatsapp_connection, fake_graph, owner_client, create, task_queue
):
    leads = [open_lead(account) for _ in range(3)]
    data = create({"message": "Hi", "leadIds": [str(lead.pk) for lead in leads]}).json()["data"]
    fake_graph.fail_next(code=130429, status=400, times=10)  # more than the client's own retries
    run_tasks(task_queue)
    assert owner_client.get(url(data["id"])).json()["data"]["status"] == "sending"
    [retry] = Schedule.objects.filter(func="campaigns.tasks.broadcasts.send_batch")
    args = eval(retry.args)  # noqa: S307 (django-q2 stores args as a Python literal)
    assert args[0] == data["id"] and len(args[1]) >= 1
    fake_graph.state.failures.clear()
    tasks.send_batch(*args)
    detail = owner_client.get(url(data["id"])).json()["data"]
    assert detail["status"] == "completed"
    assert detail["totals"]["sent"] == 3
    accepted = [r.json["to"] for r in fake_graph.requests if r.method == "POST"][-len(args[1]) :]
    assert len(set(accepted)) == len(args[1])


def test_the_dispatcher_completes_broadcasts_whose_messages_the_sweeper_sent(
    account, whatsapp_connection, fake_graph, owner_client, create, task_queue
):
    lead = open_lead(account)
    data = create({"message": "Hi", "leadIds": [str(lead.pk)]}).json()["data"]
    task_queue.clear()  # the batch task was lost with its worker
    from messaging.tasks import deliver_message

    deliver_message(str(Message.objects.get(broadcast_id=data["id"]).pk))  # the sweeper's per-message path
    assert owner_client.get(url(data["id"])).json()["data"]["status"] == "sending"
    dispatch_due()
    assert owner_client.get(url(data["id"])).json()["data"]["status"] == "completed"
    assert sends_to(fake_graph) == Counter({lead.phone.lstrip("+"): 1})


# --- Admin ----------------------------------------------------------------------------------------


def test_the_admin_lists_searches_shows_counts_and_cancels_through_the_service(
    account, owner, client, create, task_queue
):
    staff = User.objects.create_superuser("staff@heroshhi.test", "Staff-pass-123!")
    client.force_login(staff)
    leads = [open_lead(account) for _ in range(2)]
    sending = create({"name": "Spring sale", "message": "Hi", "leadIds": [str(lead.pk) for lead in leads]}).json()[
        "data"
    ]
    draft = create({"name": "Autumn", "message": "Hi", "leadIds": [str(leads[0].pk)], "draft": True}).json()["data"]
    assert Broadcast in admin_site._registry

    changelist = reverse("admin:campaigns_broadcast_changelist")
    page = client.get(changelist, {"q": "spring"})
    assert page.status_code == 200
    assert b"Spring sale" in page.content and b"Autumn" not in page.content
    assert client.get(changelist, {"status__exact": "draft"}).status_code == 200
    detail = client.get(reverse("admin:campaigns_broadcast_change", args=[sending["id"]]))
    assert detail.status_code == 200
    assert b"queued: 2" in detail.content

    response = client.post(
        changelist, {"action": "cancel_broadcasts", "_selected_action": [sending["id"], draft["id"]]}, follow=True
    )
    assert response.status_code == 200
    assert set(Broadcast.objects.values_list("status", flat=True)) == {"cancelled"}
    assert Broadcast.objects.get(pk=sending["id"]).cancelled_unsent == 2
    assert not Message.objects.filter(broadcast_id=sending["id"]).exists()
