"""The scheduled-message pages of the dashboard through Django's test client: the list
with its status tabs (times in the account's zone, recipients, recurrence, creator),
scheduling a message (text or template; the time typed in the account's zone),
cancel with a confirmation, scheduling a cancelled one again, and the detail with its
delivery counts. The pages call campaigns.services.scheduled and its selectors:
agents see their own, another account's is a 404."""

import html
import re
import zoneinfo
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.tests.helpers import csrf_from_form
from campaigns.models import ScheduledMessage
from campaigns.services.scheduled import scheduled_message_create
from messaging.models import Template
from tests.pages import logged_in, page_text

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]

Status = ScheduledMessage.Status


@pytest.fixture
def kolkata(account):
    account.time_zone = "Asia/Kolkata"
    account.save(update_fields=["time_zone"])
    return zoneinfo.ZoneInfo("Asia/Kolkata")


def schedule(user, *, days=2, message="Clinic reminder", recipients=("+919876543210",), **kwargs) -> ScheduledMessage:
    return scheduled_message_create(
        user=user,
        recipients=list(recipients),
        scheduled_time=timezone.now() + timedelta(days=days),
        message=message,
        **kwargs,
    )


def form_data(zone, **fields) -> dict:
    when = (timezone.now() + timedelta(days=3)).astimezone(zone).replace(hour=9, minute=30, second=0, microsecond=0)
    return {
        "message": "Your appointment is tomorrow.",
        "template": "",
        "template_params": "",
        "recipients": "+91 98765 43210\n+919812345678, +919800000001",
        "scheduled_time": when.strftime("%Y-%m-%dT%H:%M"),
        "recurrence": "weekly",
    } | fields


# --- Create -----------------------------------------------------------------------------


def test_schedule_a_message_in_the_accounts_time_zone(owner_web, owner, kolkata):
    form = owner_web.get("/scheduled/new")
    assert form.status_code == 200
    assert 'type="datetime-local"' in form.content.decode()
    assert "Asia/Kolkata" in page_text(form)
    data = form_data(kolkata)
    response = owner_web.post("/scheduled/new", data)
    scheduled = ScheduledMessage.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/scheduled/{scheduled.pk}"
    local = scheduled.scheduled_time.astimezone(kolkata)
    assert local.strftime("%Y-%m-%dT%H:%M") == data["scheduled_time"]  # 09:30 in Kolkata, not in UTC
    assert (scheduled.recurrence, scheduled.status, scheduled.created_by) == ("weekly", "pending", owner)
    assert len(scheduled.recipients) == 3
    assert scheduled.message == "Your appointment is tomorrow."
    detail = page_text(owner_web.get(response["Location"]))
    assert "Message scheduled." in detail
    assert f"Scheduled for {local.day} {local:%b %Y, %H:%M}" in detail
    assert "Recipients (3)" in detail and "Weekly" in detail


def test_schedule_a_template(owner_web, account, kolkata):
    Template.objects.create(
        account=account,
        name="reminder",
        language="en_US",
        status=Template.Status.APPROVED,
        components=[{"type": "BODY", "text": "Hi {{1}}, see you at {{2}}."}],
        is_sandbox=True,
    )
    Template.objects.create(account=account, name="draft", status=Template.Status.PENDING, is_sandbox=True)
    form = owner_web.get("/scheduled/new").content.decode()
    assert 'value="reminder|en_US"' in form and "draft" not in form  # approved templates only
    data = form_data(
        kolkata, message="", template="reminder|en_US", template_params="{{name}}\n10:00", recurrence="none"
    )
    response = owner_web.post("/scheduled/new", data)
    assert response.status_code == 302
    scheduled = ScheduledMessage.objects.get()
    assert (scheduled.template_name, scheduled.template_params) == ("reminder", ["{{name}}", "10:00"])
    assert scheduled.message == "Hi {{name}}, see you at 10:00."


@pytest.mark.parametrize(
    ("fields", "shown"),
    [
        ({"recipients": "+919876543210, hello"}, "'hello': "),
        ({"recipients": ""}, "This field is required."),
        ({"scheduled_time": "2020-01-01T09:00"}, "is in the past"),
        ({"scheduled_time": "tomorrow"}, "is not an ISO 8601 date-time"),
        ({"scheduled_time": "2030-02-30T09:00"}, "is not an ISO 8601 date-time"),
        ({"message": ""}, "Give either a message or a template."),
        ({"message": "Hi {{nickname}}"}, "Unknown variable"),
        ({"recurrence": "hourly"}, "Select a valid choice. hourly"),
        ({"template": "ghost|en_US"}, "Select a valid choice."),
        ({"message": "x" * 5000}, "at most 4096 characters"),
    ],
)
def test_mistakes_are_shown_and_nothing_is_scheduled(owner_web, kolkata, fields, shown):
    response = owner_web.post("/scheduled/new", form_data(kolkata, **fields))
    assert response.status_code == 400
    text = page_text(response)
    assert "Please correct the errors below." in text
    assert shown in text
    assert ScheduledMessage.objects.count() == 0


def test_a_template_no_longer_approved_is_refused(owner_web, account, kolkata):
    template = Template.objects.create(
        account=account, name="reminder", status=Template.Status.APPROVED, is_sandbox=True, components=[]
    )
    form = owner_web.get("/scheduled/new")  # chosen while approved…
    assert 'value="reminder|en_US"' in form.content.decode()
    template.status = Template.Status.PAUSED
    template.save()
    response = owner_web.post("/scheduled/new", form_data(kolkata, message="", template="reminder|en_US"))
    assert response.status_code == 400  # …refused by the form's own choices now
    assert ScheduledMessage.objects.count() == 0


def test_an_agent_cannot_schedule_to_a_colleagues_contact(agent_web, account, owner, kolkata):
    from leads.tests.factories import LeadFactory

    LeadFactory(account=account, phone="+919812345678", assigned_to=owner)
    response = agent_web.post("/scheduled/new", form_data(kolkata))
    assert response.status_code == 400
    assert "a contact assigned to someone else" in page_text(response)
    assert ScheduledMessage.objects.count() == 0


# --- The list ---------------------------------------------------------------------------


def test_empty_list_says_what_to_do(owner_web):
    response = owner_web.get("/scheduled")
    assert response.status_code == 200
    assert "No pending scheduled messages" in page_text(response)
    assert 'href="/scheduled/new"' in response.content.decode()
    assert 'href="/scheduled"' in owner_web.get("/leads").content.decode()  # in the navigation


def test_list_tabs_times_and_creators(owner_web, owner, agent, kolkata):
    later = schedule(owner, days=5, message="Later one", recipients=["+919876543210", "+919812345678"])
    sooner = schedule(agent, days=1, message="Sooner one", recurrence="daily")
    cancelled = schedule(owner, days=2, message="Called off")
    ScheduledMessage.objects.filter(pk=cancelled.pk).update(status=Status.CANCELLED)
    pending = owner_web.get("/scheduled")
    body = pending.content.decode()
    assert re.findall(r'data-scheduled-id="(\d+)"', body) == [str(sooner.pk), str(later.pk)]  # next due first
    row = body[body.index(f'data-scheduled-id="{later.pk}"') :].split("</tr>")[0]
    local = later.scheduled_time.astimezone(kolkata)
    assert local.strftime("%H:%M") in row
    text = html.unescape(re.sub(r"<[^>]+>", " ", row))
    assert re.search(r"\b2\b", text) and "Once" in text and "Olivia Owner" in text
    sooner_row = html.unescape(body[body.index(f'data-scheduled-id="{sooner.pk}"') :].split("</tr>")[0])
    assert "Daily" in sooner_row and "Aditya Agent" in sooner_row
    tab = owner_web.get("/scheduled?status=cancelled").content.decode()
    assert re.findall(r'data-scheduled-id="(\d+)"', tab) == [str(cancelled.pk)]
    everything = owner_web.get("/scheduled?status=all").content.decode()
    assert len(re.findall(r'data-scheduled-id="', everything)) == 3
    unknown = owner_web.get("/scheduled?status=bogus")
    assert unknown.status_code == 200
    assert len(re.findall(r'data-scheduled-id="', unknown.content.decode())) == 2


def test_an_agent_sees_only_their_own(agent_web, owner, agent):
    mine = schedule(agent, message="Mine")
    theirs = schedule(owner, message="The admin's")
    body = agent_web.get("/scheduled").content.decode()
    assert f'data-scheduled-id="{mine.pk}"' in body and f'data-scheduled-id="{theirs.pk}"' not in body
    assert agent_web.get(f"/scheduled/{theirs.pk}").status_code == 404
    assert agent_web.post(f"/scheduled/{theirs.pk}/cancel").status_code == 404
    assert ScheduledMessage.objects.get(pk=theirs.pk).status == Status.PENDING


def test_list_renders_in_constant_queries(owner_web, owner, agent, django_assert_max_num_queries):
    for _ in range(2):
        schedule(owner)
    with django_assert_max_num_queries(12) as few:
        owner_web.get("/scheduled?status=all")
    for n in range(20):
        schedule(agent if n % 2 else owner)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = owner_web.get("/scheduled?status=all")
    assert len(re.findall(r'data-scheduled-id="', response.content.decode())) == 22


def test_list_is_paginated(owner_web, owner):
    for _ in range(27):
        schedule(owner)
    first = owner_web.get("/scheduled").content.decode()
    second = owner_web.get("/scheduled?page=2").content.decode()
    assert len(re.findall(r'data-scheduled-id="', first)) == 25
    assert len(re.findall(r'data-scheduled-id="', second)) == 2


# --- Cancel and schedule again -------------------------------------------------------------


def test_cancel_asks_first_then_cancels(owner, kolkata):
    scheduled = schedule(owner, recurrence="monthly")
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    detail = client.get(f"/scheduled/{scheduled.pk}")
    assert f'href="/scheduled/{scheduled.pk}/cancel"' in detail.content.decode()
    ask = client.get(f"/scheduled/{scheduled.pk}/cancel")
    assert ask.status_code == 200
    assert "Cancel this scheduled message?" in page_text(ask)
    assert "repeating monthly" in page_text(ask)
    assert ScheduledMessage.objects.get().status == Status.PENDING
    assert client.post(f"/scheduled/{scheduled.pk}/cancel").status_code == 403  # no CSRF token
    assert ScheduledMessage.objects.get().status == Status.PENDING
    response = client.post(f"/scheduled/{scheduled.pk}/cancel", {"csrfmiddlewaretoken": csrf_from_form(ask.content)})
    assert response.status_code == 302
    assert ScheduledMessage.objects.get().status == Status.CANCELLED
    page = client.get(f"/scheduled/{scheduled.pk}")
    assert "Cancelled: nothing will be sent." in page_text(page)
    assert "Schedule again" in page_text(page)
    assert f"/scheduled/{scheduled.pk}/cancel" not in page.content.decode()


def test_schedule_again_while_its_time_is_ahead(owner_web, owner):
    scheduled = schedule(owner)
    owner_web.post(f"/scheduled/{scheduled.pk}/cancel")
    owner_web.post(f"/scheduled/{scheduled.pk}/reactivate")
    scheduled.refresh_from_db()
    assert scheduled.status == Status.PENDING
    assert "Scheduled again." in page_text(owner_web.get(f"/scheduled/{scheduled.pk}"))


def test_too_late_to_schedule_again_is_explained(owner_web, owner):
    scheduled = schedule(owner)
    ScheduledMessage.objects.filter(pk=scheduled.pk).update(
        status=Status.CANCELLED, scheduled_time=timezone.now() - timedelta(hours=1)
    )
    response = owner_web.post(f"/scheduled/{scheduled.pk}/reactivate")
    assert response.status_code == 302
    assert "can't be pending again" in page_text(owner_web.get(f"/scheduled/{scheduled.pk}"))
    assert ScheduledMessage.objects.get().status == Status.CANCELLED


def test_a_sent_one_cannot_be_cancelled(owner_web, owner):
    scheduled = schedule(owner)
    ScheduledMessage.objects.filter(pk=scheduled.pk).update(status=Status.SENT, queued=1)
    page = owner_web.get(f"/scheduled/{scheduled.pk}")
    assert "Delivery" in page_text(page) and "Cancel…" not in page_text(page)
    owner_web.post(f"/scheduled/{scheduled.pk}/cancel")
    assert "which is final" in page_text(owner_web.get(f"/scheduled/{scheduled.pk}"))
    assert ScheduledMessage.objects.get().status == Status.SENT


# --- Tenancy, login, CSRF -----------------------------------------------------------------


def test_another_accounts_message_is_not_found(outsider, owner):
    scheduled = schedule(owner)
    client = logged_in(outsider)
    for path in (f"/scheduled/{scheduled.pk}", f"/scheduled/{scheduled.pk}/cancel", "/scheduled/99999999999999999999"):
        assert client.get(path).status_code == 404, path
    assert client.post(f"/scheduled/{scheduled.pk}/cancel").status_code == 404
    assert client.post(f"/scheduled/{scheduled.pk}/reactivate").status_code == 404
    assert f'data-scheduled-id="{scheduled.pk}"' not in client.get("/scheduled?status=all").content.decode()
    assert ScheduledMessage.objects.get().status == Status.PENDING


def test_pages_need_a_login(client, owner):
    scheduled = schedule(owner)
    for path in ("/scheduled", "/scheduled/new", f"/scheduled/{scheduled.pk}"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response["Location"], path


def test_create_needs_its_csrf_token(owner, kolkata):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.post("/scheduled/new", form_data(kolkata)).status_code == 403
    assert client.post("/scheduled/1/reactivate").status_code == 403
    assert ScheduledMessage.objects.count() == 0
    form = client.get("/scheduled/new")
    response = client.post("/scheduled/new", form_data(kolkata) | {"csrfmiddlewaretoken": csrf_from_form(form.content)})
    assert response.status_code == 302
    assert ScheduledMessage.objects.count() == 1


def test_forms_carry_a_csrf_token(owner_web, owner):
    scheduled = schedule(owner)
    cancelled = schedule(owner)
    ScheduledMessage.objects.filter(pk=cancelled.pk).update(status=Status.CANCELLED)
    for path in (
        "/scheduled/new",
        f"/scheduled/{scheduled.pk}",
        f"/scheduled/{scheduled.pk}/cancel",
        f"/scheduled/{cancelled.pk}",
    ):
        body = owner_web.get(path).content.decode()
        assert body.count('method="post"') == body.count('name="csrfmiddlewaretoken"'), path
