"""The drip pages of the dashboard through Django's test client: the list with its
counts and empty state, the create and edit forms with ordered steps (a formset that
grows without JavaScript), the drip page with its enrollments, delete with a
confirmation, enrolling leads and stopping an enrollment. The pages call
campaigns.services / selectors: admins manage drips, agents use them, another
account's drip is a 404."""

import html
import re
import uuid
import zoneinfo
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.tests.helpers import csrf_from_form
from campaigns.models import Drip, DripStep, Enrollment
from campaigns.services.drips import drip_create, drip_enroll
from campaigns.tests.helpers import approved_template
from leads.models import Lead
from leads.tests.factories import LeadFactory
from tests.pages import page_text

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]


def step_rows(*steps: dict, initial: int = 0, extra: int = 0) -> dict:
    """The formset's POST data: one row per step (delay_amount, delay_unit, text,
    template, template_params, ORDER, DELETE), plus empty rows."""
    data = {"steps-TOTAL_FORMS": str(len(steps) + extra), "steps-INITIAL_FORMS": str(initial)}
    for index, step in enumerate(steps):
        row = {"delay_amount": "1", "delay_unit": "days", "text": "", "template": "", "template_params": ""} | step
        for key, value in row.items():
            if value is not None and value is not False:
                data[f"steps-{index}-{key}"] = value
    for index in range(len(steps), len(steps) + extra):
        data[f"steps-{index}-delay_amount"] = "1"
        data[f"steps-{index}-delay_unit"] = "days"
    return data


def drip_post(name="Welcome", *steps, extra=0, initial=0, **fields) -> dict:
    data = {
        "name": name,
        "description": "",
        "is_active": "on",
        "stop_on_reply": "on",
        "stop_on_conversion": "on",
        "send_window_start": "",
        "send_window_end": "",
    } | fields
    return data | step_rows(*steps, initial=initial, extra=extra)


def make_drip(account, owner, name="Nurture", steps=None, **fields) -> Drip:
    steps = steps or [
        {"delay_amount": 0, "delay_unit": "minutes", "text": "Hello {{name}}"},
        {"delay_amount": 2, "delay_unit": "days", "text": "Still interested?"},
    ]
    return drip_create(account=account, user=owner, data={"name": name, "steps": steps, **fields})


def step_texts(drip: Drip) -> list[tuple]:
    return list(
        DripStep.objects.filter(drip=drip)
        .order_by("position")
        .values_list("delay_amount", "delay_unit", "text", "template_name", "template_params")
    )


# --- The list ---------------------------------------------------------------------------


def test_empty_list_tells_an_admin_what_to_do(owner_web):
    response = owner_web.get("/drips")
    assert response.status_code == 200
    text = page_text(response)
    assert "No drips yet" in text
    assert "Create your first drip" in text
    assert 'href="/drips/new"' in response.content.decode()


def test_empty_list_for_an_agent_has_no_create_link(agent_web):
    response = agent_web.get("/drips")
    assert response.status_code == 200
    assert "Ask an admin" in page_text(response)
    assert 'href="/drips/new"' not in response.content.decode()


def test_the_navigation_links_the_drips_page(owner_web):
    assert 'href="/drips"' in owner_web.get("/leads").content.decode()


def test_list_shows_steps_and_enrollment_counts(owner_web, account, owner, outsider, other_account):
    drip = make_drip(account, owner, "Nurture")
    make_drip(account, owner, "Alpha", steps=[{"text": "one"}], is_active=False)
    make_drip(other_account, outsider, "Globex drip")
    leads = [LeadFactory(account=account) for _ in range(3)]
    drip_enroll(drip=drip, user=owner, lead_ids=[lead.pk for lead in leads])
    Enrollment.objects.filter(lead=leads[0]).update(status=Enrollment.Status.COMPLETED)
    response = owner_web.get("/drips")
    body = response.content.decode()
    assert re.findall(r'class="drip-name">([^<]+)<', body) == ["Alpha", "Nurture"]
    assert "Globex drip" not in body
    row = body[body.index(f'data-drip-id="{drip.pk}"') :]
    row = row[: row.index("</tr>")]
    assert re.search(r'data-testid="steps-count">2<', row)
    assert re.search(r'data-testid="active-count">2<', row)
    assert "Paused" in page_text(response)


def test_list_renders_in_constant_queries(owner_web, account, owner, django_assert_max_num_queries):
    for n in range(3):
        make_drip(account, owner, f"Drip {n}")
    with django_assert_max_num_queries(12) as few:
        owner_web.get("/drips")
    for n in range(3, 15):
        make_drip(account, owner, f"Drip {n}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = owner_web.get("/drips")
    assert len(re.findall(r'class="drip-name"', response.content.decode())) == 15


# --- Create -----------------------------------------------------------------------------


def test_admin_creates_a_drip_with_a_text_and_a_template_step(owner_web, account, owner):
    approved_template(account)
    form = owner_web.get("/drips/new")
    assert form.status_code == 200
    assert 'value="offer|en_US"' in form.content.decode()
    data = drip_post(
        "Welcome",
        {"delay_amount": "0", "delay_unit": "minutes", "text": "Hi {{name}}, thanks for asking!"},
        {"delay_amount": "3", "delay_unit": "days", "template": "offer|en_US", "template_params": "{{name}}\n20%"},
        extra=1,
        send_window_start="09:00",
        send_window_end="20:00",
        stop_on_conversion="",
    )
    data.pop("stop_on_conversion")
    response = owner_web.post("/drips/new", data)
    drip = Drip.objects.get(account=account)
    assert response.status_code == 302
    assert response["Location"] == f"/drips/{drip.pk}"
    assert (drip.name, drip.is_active, drip.stop_on_reply, drip.stop_on_conversion) == ("Welcome", True, True, False)
    assert (drip.send_window_start.strftime("%H:%M"), drip.send_window_end.strftime("%H:%M")) == ("09:00", "20:00")
    assert drip.created_by == owner
    assert step_texts(drip) == [
        (0, "minutes", "Hi {{name}}, thanks for asking!", "", []),
        (3, "days", "", "offer", ["{{name}}", "20%"]),
    ]
    page = owner_web.get(response["Location"])
    text = page_text(page)
    assert "Drip “Welcome” created." in text
    assert "After 0 minutes: Hi {{name}}, thanks for asking!" in text
    assert "template offer (en_US) with {{name}}, 20%" in text
    assert "Sends only between 09:00 and 20:00" in text


def test_form_errors_are_shown_and_nothing_is_created(owner_web, account):
    data = drip_post("", {"text": "Hello", "template": "nope|en_US"}, {"delay_amount": "-3", "text": "Later"})
    response = owner_web.post("/drips/new", data)
    assert response.status_code == 400
    text = page_text(response)
    assert "Please correct the errors below." in text
    assert "This field is required." in text
    assert "Select a valid choice." in text
    assert "greater than or equal to 0" in text
    assert re.search(r">\s*Later</textarea>", response.content.decode())  # the rows keep their text
    assert Drip.objects.count() == 0
    assert DripStep.objects.count() == 0


def test_service_errors_land_on_the_right_step(owner_web, account):
    approved_template(account)
    data = drip_post(
        "Welcome",
        {"text": "Fine"},
        {},  # a blank row between: skipped, so the service's index 1 is the form's row 2
        {"text": "Hi {{nickname}}"},
        {"text": "Both", "template": "offer|en_US"},
        send_window_start="09:00",
    )
    response = owner_web.post("/drips/new", data)
    assert response.status_code == 400
    body = response.content.decode()
    rows = body.split('data-testid="step"')[1:]
    assert len(rows) == 4
    assert "field-error" not in rows[0] and "field-error" not in rows[1]
    assert "Unknown variable" in html.unescape(rows[2])
    assert "Give either a text or a template, not both." in html.unescape(rows[3])
    assert "Give both ends of the window." in html.unescape(body)
    assert Drip.objects.count() == 0


def test_a_drip_needs_a_step(owner_web):
    response = owner_web.post("/drips/new", drip_post("Empty", extra=2))
    assert response.status_code == 400
    assert "Steps: A drip needs at least one step." in page_text(response)
    assert Drip.objects.count() == 0


def test_add_a_step_without_javascript(owner_web):
    response = owner_web.post("/drips/new", drip_post("Growing", {"text": "First"}, extra=1) | {"add_step": "1"})
    assert response.status_code == 200
    body = response.content.decode()
    assert body.count('data-testid="step"') == 3
    assert re.search(r">\s*First</textarea>", body)
    assert 'value="Growing"' in body
    assert Drip.objects.count() == 0


def test_steps_follow_their_order_numbers_and_deleted_rows_are_dropped(owner_web, account):
    data = drip_post(
        "Ordered",
        {"text": "goes second", "ORDER": "2"},
        {"text": "removed", "DELETE": "on"},
        {"text": "goes first", "ORDER": "1"},
    )
    assert owner_web.post("/drips/new", data).status_code == 302
    drip = Drip.objects.get(account=account)
    assert [row[2] for row in step_texts(drip)] == ["goes first", "goes second"]


def test_huge_and_wrong_inputs_are_refused_without_a_500(owner_web):
    data = drip_post(
        "x" * 5000,
        {"text": "y" * 5000, "delay_unit": "fortnights", "delay_amount": "ten"},
        send_window_start="25:99",
    )
    data["steps-TOTAL_FORMS"] = "abc"
    response = owner_web.post("/drips/new", data)
    assert response.status_code == 400
    assert Drip.objects.count() == 0
    data["steps-TOTAL_FORMS"] = "1"
    response = owner_web.post("/drips/new", data)
    assert response.status_code == 400
    text = page_text(response)
    assert "Ensure this value has at most 200 characters" in text
    assert "Select a valid choice. fortnights" in text
    assert "Enter a whole number." in text
    assert "Enter a valid time." in text
    assert Drip.objects.count() == 0


# --- Edit -------------------------------------------------------------------------------


def test_edit_is_prefilled_and_replaces_the_steps(owner_web, account, owner):
    drip = make_drip(account, owner, "Nurture", send_window_start="08:00", send_window_end="18:00")
    form = owner_web.get(f"/drips/{drip.pk}/edit")
    body = form.content.decode()
    assert form.status_code == 200
    assert 'value="Nurture"' in body
    assert re.search(r">\s*Hello \{\{name\}\}</textarea>", html.unescape(body))
    assert 'value="08:00"' in body
    assert body.count('data-testid="step"') == 4  # two steps and two empty rows
    data = drip_post(
        "Nurture v2",
        {"delay_amount": "0", "delay_unit": "minutes", "text": "Hello again"},
        {"delay_amount": "2", "delay_unit": "days", "text": "Still interested?", "DELETE": "on"},
        {"delay_amount": "5", "delay_unit": "hours", "text": "Last call"},
        initial=2,
        send_window_start="",
        send_window_end="",
    )
    data.pop("is_active")
    response = owner_web.post(f"/drips/{drip.pk}/edit", data)
    assert response.status_code == 302
    drip.refresh_from_db()
    assert (drip.name, drip.is_active, drip.send_window_start) == ("Nurture v2", False, None)
    assert [(r[0], r[1], r[2]) for r in step_texts(drip)] == [(0, "minutes", "Hello again"), (5, "hours", "Last call")]


def test_a_refused_edit_changes_nothing(owner_web, account, owner):
    drip = make_drip(account, owner, "Nurture")
    before = step_texts(drip)
    data = drip_post("Renamed", {"text": "ok"}, {"text": "Hi {{unknown_thing}}"}, initial=2)
    response = owner_web.post(f"/drips/{drip.pk}/edit", data)
    assert response.status_code == 400
    assert "Unknown variable" in page_text(response)
    drip.refresh_from_db()
    assert drip.name == "Nurture"
    assert step_texts(drip) == before


# --- Permissions and tenancy ------------------------------------------------------------


def test_agents_see_drips_but_cannot_manage_them(agent_web, account, owner):
    drip = make_drip(account, owner, "Nurture")
    listed = agent_web.get("/drips")
    assert "Nurture" in page_text(listed)
    assert 'href="/drips/new"' not in listed.content.decode()
    detail = agent_web.get(f"/drips/{drip.pk}")
    assert detail.status_code == 200
    assert f"/drips/{drip.pk}/edit" not in detail.content.decode()
    assert f"/drips/{drip.pk}/delete" not in detail.content.decode()
    assert agent_web.get("/drips/new").status_code == 403
    assert agent_web.post("/drips/new", drip_post("Sneaky", {"text": "x"})).status_code == 403
    assert agent_web.get(f"/drips/{drip.pk}/edit").status_code == 403
    assert agent_web.post(f"/drips/{drip.pk}/edit", drip_post("Renamed", {"text": "x"}, initial=2)).status_code == 403
    assert agent_web.post(f"/drips/{drip.pk}/delete").status_code == 403
    drip.refresh_from_db()
    assert drip.name == "Nurture"
    assert Drip.objects.count() == 1


def test_another_accounts_drip_is_not_found(outsider_web, account, owner):
    drip = make_drip(account, owner, "Nurture")
    lead = LeadFactory(account=account)
    drip_enroll(drip=drip, user=owner, lead_ids=[lead.pk])
    enrollment = Enrollment.objects.get()
    for path in (f"/drips/{drip.pk}", f"/drips/{drip.pk}/edit", f"/drips/{drip.pk}/delete", f"/drips/{uuid.uuid4()}"):
        assert outsider_web.get(path).status_code == 404, path
    assert outsider_web.post(f"/drips/{drip.pk}/delete").status_code == 404
    assert outsider_web.post(f"/drips/{drip.pk}/edit", drip_post("Mine", {"text": "x"})).status_code == 404
    assert outsider_web.post(f"/drips/{drip.pk}/enroll", {"ids": [str(lead.pk)]}).status_code == 404
    assert outsider_web.post(f"/drips/{drip.pk}/enrollments/{enrollment.pk}/stop").status_code == 404
    assert outsider_web.post("/drips/enroll", {"drip": str(drip.pk), "ids": [str(lead.pk)]}).status_code == 404
    assert Drip.objects.get().name == "Nurture"
    assert Enrollment.objects.get().status == Enrollment.Status.ACTIVE


def test_pages_need_a_login(client, account, owner):
    drip = make_drip(account, owner)
    for path in ("/drips", "/drips/new", f"/drips/{drip.pk}"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response["Location"], path


@pytest.mark.parametrize(
    "route", ["/drips/new", "/drips/{id}/edit", "/drips/{id}/delete", "/drips/{id}/enroll", "/drips/enroll"]
)
def test_every_form_needs_its_csrf_token(owner, account, route):
    drip = make_drip(account, owner, "Nurture")
    lead = LeadFactory(account=account)
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    data = drip_post("Other", {"text": "x"}, initial=2) | {"ids": [str(lead.pk)], "drip": str(drip.pk)}
    assert client.post(route.format(id=drip.pk), data).status_code == 403
    assert list(Drip.objects.values_list("name", flat=True)) == ["Nurture"]
    assert Enrollment.objects.count() == 0


def test_forms_carry_a_csrf_token(owner_web, account, owner):
    drip = make_drip(account, owner)
    drip_enroll(drip=drip, user=owner, lead_ids=[LeadFactory(account=account).pk])
    for path in ("/drips", "/drips/new", f"/drips/{drip.pk}", f"/drips/{drip.pk}/edit", f"/drips/{drip.pk}/delete"):
        body = owner_web.get(path).content.decode()
        assert body.count('method="post"') == body.count('name="csrfmiddlewaretoken"'), path


# --- Delete -----------------------------------------------------------------------------


def test_delete_asks_first_then_deletes(owner_web, account, owner):
    drip = make_drip(account, owner, "Nurture")
    drip_enroll(drip=drip, user=owner, lead_ids=[LeadFactory(account=account).pk])
    ask = owner_web.get(f"/drips/{drip.pk}/delete")
    assert ask.status_code == 200
    assert "Delete Nurture?" in page_text(ask)
    assert "1 active enrollment go" in page_text(ask)
    assert Drip.objects.filter(pk=drip.pk).exists()
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    page = client.get(f"/drips/{drip.pk}/delete")
    response = client.post(f"/drips/{drip.pk}/delete", {"csrfmiddlewaretoken": csrf_from_form(page.content)})
    assert response.status_code == 302 and response["Location"] == "/drips"
    assert not Drip.objects.exists()
    assert not Enrollment.objects.exists()
    assert "Drip “Nurture” deleted." in page_text(client.get("/drips"))


# --- The drip page, enrollments ---------------------------------------------------------


def test_detail_shows_progress_with_times_in_the_accounts_zone(owner_web, account, owner):
    account.time_zone = "Asia/Kolkata"
    account.save(update_fields=["time_zone"])
    drip = make_drip(account, owner, "Nurture")
    anil, bela = LeadFactory(account=account, name="Anil"), LeadFactory(account=account, name="Bela")
    drip_enroll(drip=drip, user=owner, lead_ids=[anil.pk, bela.pk])
    due = timezone.now().replace(microsecond=0) + timedelta(days=1)
    Enrollment.objects.filter(lead=anil).update(next_step=1, steps_sent=1, next_due_at=due)
    Enrollment.objects.filter(lead=bela).update(status=Enrollment.Status.STOPPED, stop_reason="replied")
    response = owner_web.get(f"/drips/{drip.pk}")
    assert response.status_code == 200
    body = response.content.decode()
    assert re.search(r'data-testid="count-active">1<', body)
    assert re.search(r'data-testid="count-stopped">1<', body)
    local = due.astimezone(zoneinfo.ZoneInfo("Asia/Kolkata"))
    anil_row = body[body.index(f"/leads/{anil.pk}") :].split("</tr>")[0]
    assert "Step 2 of 2" in anil_row
    assert local.strftime("%H:%M") in anil_row and f"{local.day} " in anil_row
    assert "Stop" in anil_row
    bela_row = body[body.index(f"/leads/{bela.pk}") :].split("</tr>")[0]
    assert "Stopped" in bela_row and "(replied)" in bela_row and "<button" not in bela_row
    only_stopped = owner_web.get(f"/drips/{drip.pk}?status=stopped").content.decode()
    assert f"/leads/{bela.pk}" in only_stopped and f"/leads/{anil.pk}" not in only_stopped


def test_detail_renders_in_constant_queries(owner_web, account, owner, django_assert_max_num_queries):
    drip = make_drip(account, owner)
    drip_enroll(drip=drip, user=owner, lead_ids=[LeadFactory(account=account).pk for _ in range(2)])
    with django_assert_max_num_queries(15) as few:
        owner_web.get(f"/drips/{drip.pk}")
    drip_enroll(drip=drip, user=owner, lead_ids=[LeadFactory(account=account).pk for _ in range(20)])
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = owner_web.get(f"/drips/{drip.pk}")
    assert response.content.decode().count("data-enrollment-id=") == 22


def test_enrollments_are_paginated(owner_web, account, owner):
    drip = make_drip(account, owner)
    drip_enroll(drip=drip, user=owner, lead_ids=[LeadFactory(account=account).pk for _ in range(27)])
    first = owner_web.get(f"/drips/{drip.pk}").content.decode()
    second = owner_web.get(f"/drips/{drip.pk}?page=2").content.decode()
    assert first.count("data-enrollment-id=") == 25
    assert second.count("data-enrollment-id=") == 2
    assert "Page 2 of 2" in html.unescape(second)


def test_an_agent_sees_only_enrollments_of_leads_they_may_see(agent_web, account, owner, agent):
    drip = make_drip(account, owner)
    mine = LeadFactory(account=account, name="Mine", assigned_to=agent)
    theirs = LeadFactory(account=account, name="Colleague's", assigned_to=owner)
    drip_enroll(drip=drip, user=owner, lead_ids=[mine.pk, theirs.pk])
    body = agent_web.get(f"/drips/{drip.pk}").content.decode()
    assert f"/leads/{mine.pk}" in body and f"/leads/{theirs.pk}" not in body
    hidden = Enrollment.objects.get(lead=theirs)
    assert agent_web.post(f"/drips/{drip.pk}/enrollments/{hidden.pk}/stop").status_code == 404
    assert Enrollment.objects.get(lead=theirs).status == Enrollment.Status.ACTIVE


def test_stop_an_enrollment(owner_web, account, owner):
    drip = make_drip(account, owner)
    lead = LeadFactory(account=account, name="Anil")
    drip_enroll(drip=drip, user=owner, lead_ids=[lead.pk])
    enrollment = Enrollment.objects.get()
    response = owner_web.post(f"/drips/{drip.pk}/enrollments/{enrollment.pk}/stop")
    assert response.status_code == 302 and response["Location"] == f"/drips/{drip.pk}"
    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.stop_reason) == ("stopped", "cancelled")
    assert "Anil will get no more steps of this drip." in page_text(owner_web.get(f"/drips/{drip.pk}"))
    owner_web.post(f"/drips/{drip.pk}/enrollments/{enrollment.pk}/stop")
    assert "already finished" in page_text(owner_web.get(f"/drips/{drip.pk}"))
    assert owner_web.get(f"/drips/{drip.pk}/enrollments/{enrollment.pk}/stop").status_code == 405
    assert owner_web.post(f"/drips/{drip.pk}/enrollments/99999999/stop").status_code == 404


def test_enroll_leads_by_id(agent_web, account, owner, agent):
    drip = make_drip(account, owner, "Nurture")
    fresh = LeadFactory(account=account, assigned_to=agent)
    already = LeadFactory(account=account)
    opted_out = LeadFactory(account=account, is_opted_out=True)
    colleague = LeadFactory(account=account, assigned_to=owner)
    drip_enroll(drip=drip, user=owner, lead_ids=[already.pk])
    ids = [str(x.pk) for x in (fresh, already, opted_out, colleague)] + ["not-an-id"]
    response = agent_web.post(f"/drips/{drip.pk}/enroll", {"ids": ids})
    assert response.status_code == 302 and response["Location"] == f"/drips/{drip.pk}"
    assert set(Enrollment.objects.values_list("lead_id", flat=True)) == {fresh.pk, already.pk}
    text = page_text(agent_web.get(f"/drips/{drip.pk}"))
    assert "1 lead enrolled in “Nurture”; 1 already enrolled; 1 opted out; 2 not found." in text


def test_enroll_from_the_leads_list_bulk_bar(owner_web, account, owner):
    drip = make_drip(account, owner, "Nurture")
    leads = [LeadFactory(account=account) for _ in range(2)]
    data = {"drip": str(drip.pk), "ids": [str(lead.pk) for lead in leads], "next": "/leads?status=new"}
    response = owner_web.post("/drips/enroll", data)
    assert response.status_code == 302 and response["Location"] == "/leads?status=new"
    assert Enrollment.objects.filter(drip=drip).count() == 2
    off_site = owner_web.post("/drips/enroll", data | {"next": "https://evil.example/"})
    assert off_site["Location"] == f"/drips/{drip.pk}"
    no_drip = owner_web.post("/drips/enroll", {"ids": [str(leads[0].pk)], "next": "/leads"})
    assert no_drip["Location"] == "/leads"
    assert "Choose a drip" in page_text(owner_web.get("/drips"))
    assert owner_web.post("/drips/enroll", {"drip": "garbage", "ids": [str(leads[0].pk)]}).status_code == 404


def test_enroll_refusals_are_flashed_and_duplicates_count_once(owner_web, account, owner):
    drip = make_drip(account, owner, "Paused", is_active=False)
    lead = LeadFactory(account=account)
    owner_web.post(f"/drips/{drip.pk}/enroll", {"ids": [str(lead.pk)]})
    assert "Nobody was enrolled: This drip is inactive" in page_text(owner_web.get(f"/drips/{drip.pk}"))
    owner_web.post(f"/drips/{drip.pk}/enroll", {})
    assert "Select the leads to enroll first." in page_text(owner_web.get(f"/drips/{drip.pk}"))
    active = make_drip(account, owner, "Active")
    ids = [str(lead.pk)] * 999 + ["00000000-0000-0000-0000-000000000000"]
    owner_web.post(f"/drips/{active.pk}/enroll", {"ids": ids})
    assert "1 lead enrolled in “Active”; 1 not found." in page_text(owner_web.get(f"/drips/{active.pk}"))
    Enrollment.objects.all().delete()
    huge = owner_web.post(f"/drips/{active.pk}/enroll", {"ids": [str(uuid.uuid4()) for _ in range(5001)]})
    assert huge.status_code == 400  # more fields than a form may carry: refused before the view
    assert Enrollment.objects.count() == 0
    assert Lead.objects.count() == 1
