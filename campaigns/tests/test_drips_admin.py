"""The Django admin of drips: a drip with its steps inline, saved through the drip
service (same checks as the API, steps stored in order), and enrollments with
filters, search and a "stop" action."""

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from campaigns.models import Drip, DripStep, Enrollment
from leads.tests.factories import LeadFactory
from messaging.models import Message, Template

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(password) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root@heroshhi.test", password, name="Root"))
    return client


def step_rows(steps: list[dict], existing: list[DripStep] = ()) -> dict:
    """The inline formset's POST data: existing steps first (with their ids), then new ones."""
    data = {
        "steps-TOTAL_FORMS": str(len(steps)),
        "steps-INITIAL_FORMS": str(len(existing)),
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
    }
    for index, step in enumerate(steps):
        row = {
            "order": "",
            "delay_amount": "0",
            "delay_unit": "minutes",
            "text": "",
            "template_name": "",
            "template_language": "",
            "template_params": "[]",
            **step,
        }
        if index < len(existing):
            row["id"] = str(existing[index].pk)
            row["drip"] = str(existing[index].drip_id)
        for name, value in row.items():
            data[f"steps-{index}-{name}"] = value
    return data


def drip_form(account, **fields) -> dict:
    return {
        "account": str(account.pk),
        "name": "Onboarding",
        "description": "",
        "is_active": "on",
        "stop_on_reply": "on",
        "send_window_start": "",
        "send_window_end": "",
        **fields,
    }


def stored(drip) -> list[tuple]:
    return list(drip.steps.order_by("position").values_list("position", "delay_amount", "text", "template_name"))


@pytest.mark.parametrize(
    "path",
    [
        "/admin/campaigns/drip/",
        "/admin/campaigns/drip/add/",
        "/admin/campaigns/enrollment/",
        "/admin/campaigns/enrollment/?status__exact=active&q=Priya",
        "/admin/campaigns/enrollment/?stop_reason__exact=opted_out",
        "/admin/campaigns/drip/?q=Nurture&is_active__exact=1",
    ],
)
def test_the_admin_pages_open(staff, account, owner, path):
    drip = Drip.objects.create(account=account, name="Nurture")
    DripStep.objects.create(drip=drip, position=0, text="Hi")
    Enrollment.objects.create(account=account, drip=drip, lead=LeadFactory(account=account, name="Priya"))

    response = staff.get(path)

    assert response.status_code == 200
    assert staff.get(f"/admin/campaigns/drip/{drip.pk}/change/").status_code == 200
    enrollment = Enrollment.objects.get()
    assert staff.get(f"/admin/campaigns/enrollment/{enrollment.pk}/change/").status_code == 200


def test_adding_a_drip_saves_its_steps_in_the_order_given(staff, account, owner):
    steps = [
        {"order": "2", "delay_amount": "3", "delay_unit": "days", "text": "Third"},
        {"order": "0", "text": "First"},
        {
            "order": "1",
            "delay_amount": "1",
            "delay_unit": "hours",
            "template_name": "hello_world",
            "template_params": '["{{name}}"]',
        },
    ]

    response = staff.post("/admin/campaigns/drip/add/", {**drip_form(account), **step_rows(steps)})

    assert response.status_code == 302, response.content.decode()[:3000]
    drip = Drip.objects.get(name="Onboarding")
    assert drip.account == account
    assert stored(drip) == [(0, 0, "First", ""), (1, 1, "", "hello_world"), (2, 3, "Third", "")]
    assert DripStep.objects.get(drip=drip, position=1).template_language == "en_US"


def test_steps_can_swap_places(staff, account):
    drip = Drip.objects.create(account=account, name="Nurture")
    first = DripStep.objects.create(drip=drip, position=0, text="A")
    second = DripStep.objects.create(drip=drip, position=1, text="B")
    steps = [{"order": "1", "text": "A"}, {"order": "0", "text": "B"}]

    response = staff.post(
        f"/admin/campaigns/drip/{drip.pk}/change/",
        {**drip_form(account, name="Nurture"), **step_rows(steps, existing=[first, second])},
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    assert [text for _, _, text, _ in stored(drip)] == ["B", "A"]


@pytest.mark.parametrize(
    "steps,error",
    [
        ([{"text": "Hi", "template_name": "hello_world"}], "not both"),
        ([{"template_name": "promo"}], "PENDING"),
        ([{"text": "Hi {{nmae}}"}], "Unknown variable"),
        ([], "at least one step"),
    ],
    ids=["both", "unapproved template", "unknown variable", "no steps"],
)
def test_the_admin_refuses_what_the_api_refuses_and_saves_nothing(staff, account, steps, error):
    Template.objects.create(account=account, name="promo", language="en_US", status=Template.Status.PENDING)

    response = staff.post("/admin/campaigns/drip/add/", {**drip_form(account), **step_rows(steps)})

    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Drip.objects.exists()


def test_a_window_of_no_length_is_refused(staff, account):
    form = drip_form(account, send_window_start="09:00", send_window_end="09:00")

    response = staff.post("/admin/campaigns/drip/add/", {**form, **step_rows([{"text": "Hi"}])})

    assert response.status_code == 200 and "same time" in response.content.decode()
    assert not Drip.objects.exists()


def test_a_refused_change_keeps_the_old_steps(staff, account):
    drip = Drip.objects.create(account=account, name="Nurture")
    step = DripStep.objects.create(drip=drip, position=0, text="Keep me")

    response = staff.post(
        f"/admin/campaigns/drip/{drip.pk}/change/",
        {**drip_form(account, name="Changed"), **step_rows([{"text": "Hi", "template_name": "x"}], existing=[step])},
    )

    assert response.status_code == 200
    drip.refresh_from_db()
    assert drip.name == "Nurture" and stored(drip) == [(0, 0, "Keep me", "")]


def test_the_stop_action_stops_active_enrollments_through_the_service(staff, account):
    drip = Drip.objects.create(account=account, name="Nurture")
    active = Enrollment.objects.create(account=account, drip=drip, lead=LeadFactory(account=account))
    done = Enrollment.objects.create(account=account, drip=drip, lead=LeadFactory(account=account), status="completed")
    unsent = Message.objects.create(
        account=account, lead=active.lead, enrollment=active, drip_step=0, direction="outbound", body="Hi"
    )

    response = staff.post(
        "/admin/campaigns/enrollment/",
        {"action": "stop_enrollments", "_selected_action": [str(active.pk), str(done.pk)]},
    )

    assert response.status_code == 302
    active.refresh_from_db()
    assert (active.status, active.stop_reason) == ("stopped", "cancelled")
    assert active.finished_at <= timezone.now()
    assert Enrollment.objects.get(pk=done.pk).status == "completed"
    assert not Message.objects.filter(pk=unsent.pk).exists()


def test_enrollments_cannot_be_added_by_hand(staff):
    assert staff.get("/admin/campaigns/enrollment/add/").status_code == 403
