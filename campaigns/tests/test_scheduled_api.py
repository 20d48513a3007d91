"""HeyDoc's scheduled-message routes against its document: each route's exact shape,
input validation (never a 500, nothing half-created), the status transitions, the
session cookie with CSRF, and the admin."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_q.models import Schedule

from accounts.tests.factories import PASSWORD, UserFactory
from campaigns.models import ScheduledMessage
from campaigns.services import scheduled as services
from leads.models import Lead
from leads.tests.factories import LeadFactory
from messaging.models import Message, Template

URL = "/api/scheduled-messages"
LIST_KEYS = {"id", "message", "recipients", "scheduled_time", "status", "created_by", "recurrence"}
DETAIL_EXTRA_KEYS = {
    "template",
    "error",
    "queued",
    "skipped_opted_out",
    "skipped_window_closed",
    "skipped_invalid",
    "delivery",
    "sent_at",
    "created_at",
    "previous_id",
    "next_id",
}
UTC_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def later(**delta) -> datetime:
    return (timezone.now() + timedelta(**(delta or {"hours": 2}))).replace(microsecond=0)


def payload(**overrides) -> dict:
    body = {
        "message": "Good morning!",
        "recipients": ["919876543210", "+14155552671"],
        "scheduled_time": iso(later()),
        "recurrence": "daily",
    }
    for key, value in overrides.items():
        if value is ...:  # left out
            body.pop(key)
        else:
            body[key] = value
    return body


def create(client, **overrides):
    return client.post(URL, payload(**overrides), format="json")


def one_off_schedules() -> int:
    return Schedule.objects.filter(func=services.DISPATCH_DUE_FUNC).count()


def assert_error(response, status_code: int, code: str) -> dict:
    assert response.status_code == status_code, (response.status_code, response.content[:500])
    body = response.json()
    assert body["success"] is False
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


def assert_list_item(item: dict) -> None:
    assert set(item) == LIST_KEYS
    assert type(item["id"]) is int
    assert isinstance(item["message"], str)
    assert isinstance(item["recipients"], list)
    assert all(isinstance(p, str) and p.isdigit() for p in item["recipients"])
    assert UTC_Z.match(item["scheduled_time"]), item["scheduled_time"]
    assert item["status"] in {"pending", "sent", "failed", "cancelled"}
    assert item["created_by"] is None or isinstance(item["created_by"], str)
    assert item["recurrence"] in {"none", "daily", "weekly", "monthly"}


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings, monkeypatch):
    monkeypatch.setattr("campaigns.services._dispatcher_seen_until", 0.0)  # as in a fresh process
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "100000/15m", "auth": "1000/15m"}


# --- Shapes ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_answers_the_documents_body_and_stores_the_message(owner_client, owner):
    when = later(days=1)

    r = create(owner_client, scheduled_time=iso(when), recipients=["919876543210", "+1 415 555 2671"])

    assert r.status_code == 201, r.content
    body = r.json()
    assert body["success"] is True
    assert body["message"] == "Scheduled message created successfully"
    data = body["data"]
    assert set(data) == LIST_KEYS | DETAIL_EXTRA_KEYS
    assert data["recipients"] == ["919876543210", "14155552671"]
    assert data["scheduled_time"] == iso(when)
    assert (data["status"], data["recurrence"], data["created_by"]) == ("pending", "daily", owner.email)
    stored = ScheduledMessage.objects.get(pk=data["id"])
    assert stored.scheduled_time == when
    assert stored.account_id == owner.account_id
    # A one-off run of the dispatcher at its time, and the every-minute safety net.
    [one_off] = Schedule.objects.filter(func=services.DISPATCH_DUE_FUNC)
    assert (one_off.schedule_type, one_off.next_run, one_off.args) == (Schedule.ONCE, when, "()")
    assert Schedule.objects.filter(func="campaigns.tasks.dispatch_due", schedule_type=Schedule.MINUTES).exists()


@pytest.mark.django_db
def test_the_documents_example_request_works_unchanged_but_for_a_future_time(owner_client):
    when = later(days=2)
    body = {
        "message": "Good morning!",
        "recipients": ["1234567890"],
        "scheduled_time": iso(when),
        "recurrence": "daily",
    }

    r = owner_client.post(URL, body, format="json")

    assert r.status_code == 201, r.content
    assert {k: v for k, v in r.json().items() if k != "data"} == {
        "success": True,
        "message": "Scheduled message created successfully",
    }
    # Without a country code, the account's default country (IN) applies.
    assert r.json()["data"]["recipients"] == ["911234567890"]


@pytest.mark.django_db
def test_list_is_a_bare_array_of_the_documents_fields(owner_client, owner):
    first = create(owner_client, scheduled_time=iso(later(hours=1))).json()["data"]
    second = create(owner_client, scheduled_time=iso(later(hours=3)), recurrence="none").json()["data"]

    r = owner_client.get(URL)

    assert r.status_code == 200
    items = r.json()
    assert isinstance(items, list)
    for item in items:
        assert_list_item(item)
    assert [item["id"] for item in items] == [second["id"], first["id"]]  # latest time first
    assert items[0] == {key: second[key] for key in LIST_KEYS}
    assert r["X-Total-Count"] == "2"


@pytest.mark.django_db
def test_list_filters_by_status_and_is_bounded(owner_client, owner):
    ids = [create(owner_client, scheduled_time=iso(later(hours=h))).json()["data"]["id"] for h in (1, 2, 3)]
    owner_client.put(f"{URL}/{ids[0]}/status", {"status": "cancelled"}, format="json")

    cancelled = owner_client.get(URL, {"status": "cancelled"}).json()
    page = owner_client.get(URL, {"limit": 2, "page": 2})

    assert [item["id"] for item in cancelled] == [ids[0]]
    assert [item["id"] for item in page.json()] == [ids[0]]
    assert page["X-Total-Count"] == "3"
    assert_error(owner_client.get(URL, {"status": "later"}), 400, "VALIDATION_ERROR")
    assert_error(owner_client.get(URL, {"limit": "lots"}), 400, "VALIDATION_ERROR")


@pytest.mark.django_db
def test_pending_lists_only_pending_ones_next_due_first(owner_client, owner):
    later_one = create(owner_client, scheduled_time=iso(later(hours=5))).json()["data"]["id"]
    sooner = create(owner_client, scheduled_time=iso(later(hours=1))).json()["data"]["id"]
    cancelled = create(owner_client, scheduled_time=iso(later(hours=2))).json()["data"]["id"]
    owner_client.put(f"{URL}/{cancelled}/status", {"status": "cancelled"}, format="json")

    r = owner_client.get(f"{URL}/pending")

    assert r.status_code == 200
    items = r.json()
    for item in items:
        assert_list_item(item)
    assert [item["id"] for item in items] == [sooner, later_one]
    assert {item["status"] for item in items} == {"pending"}
    assert r["X-Total-Count"] == "2"


@pytest.mark.django_db
def test_get_answers_the_bare_object_with_what_happened(owner_client):
    created = create(owner_client).json()["data"]

    r = owner_client.get(f"{URL}/{created['id']}")

    assert r.status_code == 200
    data = r.json()
    assert set(data) == LIST_KEYS | DETAIL_EXTRA_KEYS
    assert_list_item({key: data[key] for key in LIST_KEYS})
    assert data == created
    assert data["delivery"] == {"queued": 0, "sent": 0, "delivered": 0, "read": 0, "failed": 0}
    assert (data["template"], data["error"], data["sent_at"], data["next_id"], data["previous_id"]) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert all(type(data[key]) is int for key in ("queued", "skipped_opted_out", "skipped_window_closed"))


@pytest.mark.django_db
def test_delete_answers_success_and_the_message_is_gone(owner_client):
    created = create(owner_client).json()["data"]

    r = owner_client.delete(f"{URL}/{created['id']}")

    assert r.status_code == 200
    assert r.json() == {"success": True, "message": "Scheduled message deleted successfully"}
    assert not ScheduledMessage.objects.exists()
    assert_error(owner_client.get(f"{URL}/{created['id']}"), 404, "NOT_FOUND")
    assert_error(owner_client.delete(f"{URL}/{created['id']}"), 404, "NOT_FOUND")


@pytest.mark.django_db
def test_routes_answer_with_and_without_a_trailing_slash(owner_client):
    created = create(owner_client).json()["data"]
    assert owner_client.post(f"{URL}/", payload(), format="json").status_code == 201
    assert owner_client.get(f"{URL}/").status_code == 200
    assert owner_client.get(f"{URL}/pending/").status_code == 200
    assert owner_client.get(f"{URL}/{created['id']}/").status_code == 200
    r = owner_client.put(f"{URL}/{created['id']}/status/", {"status": "cancelled"}, format="json")
    assert r.status_code == 200
    assert owner_client.delete(f"{URL}/{created['id']}/").status_code == 200


@pytest.mark.django_db
def test_routes_need_a_login():
    client = Client()
    for method, path in [
        ("get", URL),
        ("post", URL),
        ("get", f"{URL}/pending"),
        ("get", f"{URL}/1"),
        ("delete", f"{URL}/1"),
        ("put", f"{URL}/1/status"),
    ]:
        r = getattr(client, method)(path, content_type="application/json")
        assert_error(r, 401, "NOT_AUTHENTICATED")


# --- Session cookie with CSRF ------------------------------------------------------------------


@pytest.fixture
def session(owner) -> Client:
    """A HeyDoc client: logged in with POST /login, CSRF checks on."""
    client = Client(enforce_csrf_checks=True)
    r = client.post("/login", json.dumps({"email": owner.email, "password": PASSWORD}), content_type="application/json")
    assert r.status_code == 200, r.content
    return client


@pytest.mark.django_db
def test_a_session_client_uses_every_route_with_its_csrf_token(session):
    body = json.dumps(payload())
    assert_error(session.post(URL, body, content_type="application/json"), 403, "CSRF_FAILED")
    assert not ScheduledMessage.objects.exists()
    token = {"HTTP_X_CSRFTOKEN": session.cookies["csrftoken"].value}

    created = session.post(URL, body, content_type="application/json", **token)
    assert created.status_code == 201, created.content
    pk = created.json()["data"]["id"]
    assert [item["id"] for item in session.get(URL).json()] == [pk]
    assert session.get(f"{URL}/pending").status_code == 200
    assert session.get(f"{URL}/{pk}").json()["id"] == pk
    status_body = json.dumps({"status": "cancelled"})
    assert_error(session.put(f"{URL}/{pk}/status", status_body, content_type="application/json"), 403, "CSRF_FAILED")
    assert session.put(f"{URL}/{pk}/status", status_body, content_type="application/json", **token).status_code == 200
    assert_error(session.delete(f"{URL}/{pk}"), 403, "CSRF_FAILED")
    assert session.delete(f"{URL}/{pk}", **token).status_code == 200


# --- Time zones --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_time_without_offset_is_read_in_the_accounts_time_zone(owner_client, account):
    account.time_zone = "Asia/Kolkata"
    account.save()
    day = (timezone.now() + timedelta(days=30)).date()

    r = create(owner_client, scheduled_time=f"{day.isoformat()}T09:00:00")

    assert r.status_code == 201, r.content
    assert r.json()["data"]["scheduled_time"] == f"{day.isoformat()}T03:30:00Z"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("written", "utc"),
    [
        ("{day}T09:00:00+05:30", "{day}T03:30:00Z"),
        ("{day}T09:00:00-04:00", "{day}T13:00:00Z"),
        ("{day}T09:00:00.987654Z", "{day}T09:00:00Z"),
        ("{day} 09:00:00+00:00", "{day}T09:00:00Z"),
    ],
)
def test_a_time_with_an_offset_is_that_instant(owner_client, account, written, utc):
    account.time_zone = "America/New_York"  # ignored when the offset is given
    account.save()
    day = (timezone.now() + timedelta(days=30)).date().isoformat()

    r = create(owner_client, scheduled_time=written.format(day=day))

    assert r.status_code == 201, r.content
    assert r.json()["data"]["scheduled_time"] == utc.format(day=day)


@pytest.mark.django_db
def test_a_time_just_past_is_accepted_within_the_grace_and_refused_after(owner_client):
    assert create(owner_client, scheduled_time=iso(timezone.now() - timedelta(seconds=20))).status_code == 201

    r = create(owner_client, scheduled_time=iso(timezone.now() - timedelta(minutes=5)))

    body = assert_error(r, 400, "VALIDATION_ERROR")
    assert "in the past" in body["errors"]["scheduled_time"][0]


# --- Validation: never a 500, nothing half-created ---------------------------------------------

INVALID_CREATES = {
    "garbage time": {"scheduled_time": "tomorrow morning"},
    "month 13": {"scheduled_time": "2031-13-01T09:00:00Z"},
    "30 February": {"scheduled_time": "2031-02-30T09:00:00Z"},
    "offset out of range": {"scheduled_time": "2031-01-01T09:00:00+25:00"},
    "date only": {"scheduled_time": (datetime.now(UTC) + timedelta(days=3)).date().isoformat()},
    "year 1 with an offset": {"scheduled_time": "0001-01-01T00:00:00+14:00"},
    "too far ahead": {"scheduled_time": "2999-01-01T09:00:00Z"},
    "long past": {"scheduled_time": "2024-01-16T09:00:00Z"},
    "huge time string": {"scheduled_time": "2031-01-01T09:00:00Z" + "0" * 10_000},
    "number as time": {"scheduled_time": 1735689600},
    "list as time": {"scheduled_time": ["2031-01-01T09:00:00Z"]},
    "null time": {"scheduled_time": None},
    "empty time": {"scheduled_time": ""},
    "no time": {"scheduled_time": ...},
    "recipients a string": {"recipients": "919876543210"},
    "recipients an object": {"recipients": {"phone": "919876543210"}},
    "recipients null": {"recipients": None},
    "recipients empty": {"recipients": []},
    "no recipients": {"recipients": ...},
    "nested list": {"recipients": [["919876543210"]]},
    "boolean phone": {"recipients": [True]},
    "float phone": {"recipients": [9876543210.0]},
    "letters in a phone": {"recipients": ["919876543210", "98765abcde"]},
    "too short": {"recipients": ["12"]},
    "too many": {"recipients": [f"+9198{n:08d}" for n in range(1001)]},
    "unknown recurrence": {"recurrence": "yearly"},
    "recurrence null": {"recurrence": None},
    "recurrence a number": {"recurrence": 1},
    "message too long": {"message": "x" * 4097},
    "message blank": {"message": "   "},
    "message only HTML": {"message": "<b></b><script>alert(1)</script>"},
    "message a list": {"message": ["Hi"]},
    "no message": {"message": ...},
    "message and template": {"template": {"name": "hello_world"}},
    "template not an object": {"message": ..., "template": "hello_world"},
    "template without name": {"message": ..., "template": {"language": "en_US"}},
    "template params not a list": {"message": ..., "template": {"name": "hello_world", "params": "x"}},
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", INVALID_CREATES)
def test_invalid_input_is_a_validation_error_and_creates_nothing(owner_client, case):
    body = payload(**INVALID_CREATES[case])
    leads_before = Lead.objects.count()

    r = owner_client.post(URL, body, format="json")

    assert_error(r, 400, "VALIDATION_ERROR")
    assert r.json()["errors"]
    assert not ScheduledMessage.objects.exists()
    assert one_off_schedules() == 0
    assert Lead.objects.count() == leads_before


@pytest.mark.django_db
def test_every_invalid_phone_is_named(owner_client):
    r = create(owner_client, recipients=["919876543210", "98765abcde", "12", "+44 20 7946 0958", "xyz"])

    body = assert_error(r, 400, "VALIDATION_ERROR")
    named = body["errors"]["recipients"]
    assert len(named) == 3
    for bad in ("98765abcde", "'12'", "xyz"):
        assert any(bad in item for item in named), (bad, named)
    assert "3 invalid phone number(s)" in body["message"]


@pytest.mark.django_db
def test_duplicates_are_collapsed_in_order(owner_client):
    r = create(owner_client, recipients=["9876543210", "+14155552671", "919876543210", "+91 98765 43210", 14155552671])

    assert r.status_code == 201, r.content
    assert r.json()["data"]["recipients"] == ["919876543210", "14155552671"]


@pytest.mark.django_db
def test_a_ten_megabyte_message_is_refused_whole(owner_client):
    r = owner_client.post(URL, payload(message="x" * (10 * 1024 * 1024)), format="json")

    assert_error(r, 413, "PAYLOAD_TOO_LARGE")
    assert not ScheduledMessage.objects.exists()


@pytest.mark.django_db
def test_malformed_json_is_invalid_json(owner_client):
    r = owner_client.post(URL, '{"message": "Hi", ', content_type="application/json")

    assert_error(r, 400, "INVALID_JSON")
    assert not ScheduledMessage.objects.exists()


@pytest.mark.django_db
def test_html_is_stripped_from_the_message(owner_client):
    r = create(owner_client, message="<b>Sale</b> today <script>alert(1)</script>")

    assert r.status_code == 201
    assert r.json()["data"]["message"] == "Sale today"


@pytest.mark.django_db
@pytest.mark.parametrize("ref", ["abc", "0", "-1", "1.5", "99999999999999999999999", "١٢", "pending2"])
def test_ids_that_name_nothing_are_not_found(owner_client, ref):
    assert_error(owner_client.get(f"{URL}/{ref}"), 404, "NOT_FOUND")
    assert_error(owner_client.delete(f"{URL}/{ref}"), 404, "NOT_FOUND")
    assert_error(owner_client.put(f"{URL}/{ref}/status", {"status": "cancelled"}, format="json"), 404, "NOT_FOUND")


# --- Templates ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_template_can_be_scheduled_instead_of_a_text(owner_client):
    r = create(owner_client, message=..., template={"name": "hello_world", "params": ["Acme"]})

    assert r.status_code == 201, r.content
    data = r.json()["data"]
    assert data["template"] == {"name": "hello_world", "language": "en_US", "params": ["Acme"]}
    assert data["message"] == "Hello from Acme!"  # the body it will carry, for the list


@pytest.mark.django_db
def test_a_template_that_is_not_approved_is_refused(owner_client, account):
    Template.objects.create(account=account, name="promo", language="en_US", status=Template.Status.PENDING)

    r = create(owner_client, message=..., template={"name": "promo"})

    assert_error(r, 400, "TEMPLATE_NOT_APPROVED")
    assert not ScheduledMessage.objects.exists()
    assert_error(create(owner_client, message=..., template={"name": "nope"}), 400, "TEMPLATE_NOT_APPROVED")


# --- Status transitions ------------------------------------------------------------------------


def put_status(client, pk: int, status):
    return client.put(f"{URL}/{pk}/status", {"status": status}, format="json")


@pytest.mark.django_db
def test_pending_to_cancelled_and_back(owner_client):
    pk = create(owner_client).json()["data"]["id"]

    r = put_status(owner_client, pk, "cancelled")

    assert r.status_code == 200, r.content
    assert r.json()["success"] is True
    assert r.json()["message"] == "Status updated successfully"
    assert r.json()["data"]["status"] == "cancelled"
    assert put_status(owner_client, pk, "cancelled").status_code == 200  # the same again: nothing changes
    back = put_status(owner_client, pk, "pending")
    assert back.status_code == 200
    assert ScheduledMessage.objects.get(pk=pk).status == "pending"


@pytest.mark.django_db
def test_a_cancelled_one_whose_time_passed_cannot_be_pending_again(owner_client, account):
    pk = create(owner_client, scheduled_time=iso(later(minutes=10))).json()["data"]["id"]
    put_status(owner_client, pk, "cancelled")
    ScheduledMessage.objects.filter(pk=pk).update(scheduled_time=timezone.now() - timedelta(minutes=1))

    body = assert_error(put_status(owner_client, pk, "pending"), 400, "INVALID_STATUS_TRANSITION")

    assert "passed" in body["message"]
    assert ScheduledMessage.objects.get(pk=pk).status == "cancelled"


@pytest.mark.django_db
@pytest.mark.parametrize("closed", ["sent", "failed"])
def test_a_manual_close_sends_nothing_and_is_final(owner_client, closed):
    pk = create(owner_client, recurrence="none").json()["data"]["id"]

    r = put_status(owner_client, pk, closed)

    assert r.status_code == 200
    assert r.json()["data"]["status"] == closed
    assert r.json()["data"]["error"]  # says it was closed by hand
    assert not Message.objects.exists()
    for other in {"pending", "cancelled", "sent", "failed"} - {closed}:
        body = assert_error(put_status(owner_client, pk, other), 400, "INVALID_STATUS_TRANSITION")
        assert "final" in body["message"]
    assert ScheduledMessage.objects.get(pk=pk).status == closed
    # Its one-off schedule still fires later, and finds nothing to do.
    ScheduledMessage.objects.filter(pk=pk).update(scheduled_time=timezone.now() - timedelta(seconds=1))
    assert services.scheduled_message_dispatch(scheduled_message_id=pk) is None
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_a_manual_close_of_a_recurring_one_creates_its_next_occurrence_once(owner_client):
    created = create(owner_client, recurrence="weekly").json()["data"]

    r = put_status(owner_client, created["id"], "sent")

    next_id = r.json()["data"]["next_id"]
    following = ScheduledMessage.objects.get(pk=next_id)
    assert following.status == "pending"
    assert iso(following.scheduled_time) == iso(datetime.fromisoformat(created["scheduled_time"]) + timedelta(days=7))
    assert ScheduledMessage.objects.count() == 2


@pytest.mark.django_db
def test_cancelled_cannot_be_closed_by_hand(owner_client):
    pk = create(owner_client).json()["data"]["id"]
    put_status(owner_client, pk, "cancelled")

    assert_error(put_status(owner_client, pk, "sent"), 400, "INVALID_STATUS_TRANSITION")
    assert_error(put_status(owner_client, pk, "failed"), 400, "INVALID_STATUS_TRANSITION")


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["done", "", None, 1, ["sent"], "PENDING"])
def test_an_unknown_status_is_a_validation_error(owner_client, status):
    pk = create(owner_client).json()["data"]["id"]

    assert_error(put_status(owner_client, pk, status), 400, "VALIDATION_ERROR")
    assert ScheduledMessage.objects.get(pk=pk).status == "pending"


@pytest.mark.django_db
def test_a_missing_status_is_a_validation_error(owner_client):
    pk = create(owner_client).json()["data"]["id"]

    assert_error(owner_client.put(f"{URL}/{pk}/status", {}, format="json"), 400, "VALIDATION_ERROR")


# --- Agents and colleagues' contacts -----------------------------------------------------------


@pytest.mark.django_db
def test_an_agent_cannot_schedule_for_a_colleagues_contact(agent_client, owner, agent, account):
    LeadFactory(account=account, phone="+919800000001", assigned_to=owner)
    LeadFactory(account=account, phone="+919800000002", assigned_to=agent)
    LeadFactory(account=account, phone="+919800000003", assigned_to=None)

    refused = create(agent_client, recipients=["919800000001", "919800000002"])
    allowed = create(agent_client, recipients=["919800000002", "919800000003", "919800000004"])

    body = assert_error(refused, 400, "VALIDATION_ERROR")
    assert "919800000001" in body["errors"]["recipients"][0]
    assert allowed.status_code == 201
    assert ScheduledMessage.objects.count() == 1


# --- Admin -------------------------------------------------------------------------------------


@pytest.fixture
def staff_browser(password) -> Client:
    from accounts.models import User

    client = Client()
    client.force_login(User.objects.create_superuser("root@heroshhi.test", password, name="Root"))
    return client


@pytest.mark.django_db
def test_the_admin_lists_filters_searches_and_cancels_through_the_service(staff_browser, owner_client):
    daily = create(owner_client, message="Daily hello", recurrence="daily").json()["data"]["id"]
    once = create(owner_client, message="One-off", recurrence="none", recipients=["+447911123456"]).json()["data"]["id"]
    closed = create(owner_client, message="Closed", recurrence="none").json()["data"]["id"]
    put_status(owner_client, closed, "sent")
    changelist = "/admin/campaigns/scheduledmessage/"

    def listed(**query) -> set[int]:
        r = staff_browser.get(changelist, query)
        assert r.status_code == 200
        return {pk for pk in (daily, once, closed) if f"/admin/campaigns/scheduledmessage/{pk}/change/" in r.text}

    assert listed() == {daily, once, closed}
    assert listed(status__exact="pending") == {daily, once}
    assert listed(recurrence__exact="daily") == {daily}
    assert listed(q="One-off") == {once}
    assert listed(q="447911123456") == {once}  # a phone among the recipients
    assert listed(q="4155552671", status__exact="sent") == {closed}  # search within a filter
    assert staff_browser.get(f"{changelist}{daily}/change/").status_code == 200

    r = staff_browser.post(changelist, {"action": "cancel", "_selected_action": [daily, closed]}, follow=True)

    assert r.status_code == 200
    statuses = dict(ScheduledMessage.objects.values_list("pk", "status"))
    assert statuses == {daily: "cancelled", once: "pending", closed: "sent"}  # a sent one stays sent


@pytest.mark.django_db
@pytest.mark.parametrize("path", [URL, f"{URL}/pending"])
def test_lists_cost_a_constant_number_of_queries(
    owner, owner_client, account, path, settings, django_assert_max_num_queries
):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    def add(count: int) -> None:  # each by a different creator: created_by is joined, not fetched per row
        for _ in range(count):
            services.scheduled_message_create(
                user=UserFactory(account=account, role="agent"),
                message="Hi",
                recipients=["919800000001"],
                scheduled_time=later(hours=1),
            )

    add(2)
    owner_client.get(path)  # the rate-limit counter's first hit of its window costs more
    with django_assert_max_num_queries(20) as few:
        assert len(owner_client.get(path).json()) == 2
    add(25)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(owner_client.get(path).json()) == 27


@pytest.mark.django_db
def test_the_admin_deletes_through_the_service(staff_browser, owner_client):
    doomed = create(owner_client, message="Doomed").json()["data"]["id"]
    kept = create(owner_client, message="Kept").json()["data"]["id"]
    changelist = "/admin/campaigns/scheduledmessage/"

    r = staff_browser.post(
        f"{changelist}?q=Doomed&status__exact=pending",
        {"action": "delete_selected", "_selected_action": [doomed], "post": "yes"},
        follow=True,
    )

    assert r.status_code == 200
    assert list(ScheduledMessage.objects.values_list("pk", flat=True)) == [kept]
    assert staff_browser.post(f"{changelist}{kept}/delete/", {"post": "yes"}).status_code == 302
    assert not ScheduledMessage.objects.exists()
