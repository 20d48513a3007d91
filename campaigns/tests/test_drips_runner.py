"""The drip runner (campaigns.services.drips.enrollments_process_due): steps go out in
order after their delays, stop rules, the send window, skipped steps, duplicates.

The clock is an explicit ``now`` given to the services, never a sleep. Messages are
delivered through the real delivery path (messaging's claim, the real Cloud API client)
to the fake Graph API server, which counts what a contact would receive."""

import threading
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import tasks as campaign_tasks
from campaigns.models import Drip, DripStep, Enrollment
from campaigns.services import drips as services
from campaigns.tasks import drips as drip_tasks
from leads.models import Lead
from leads.services import lead_opt_out
from leads.tests.factories import LeadFactory
from messaging.models import Message, Template

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, 10:00 UTC


@pytest.fixture
def cloud(account, whatsapp_connection, fake_graph):
    """The account sends through the Cloud API (the fake Graph server), with an
    approved template with one body parameter."""
    Template.objects.create(
        account=account,
        name="welcome",
        language="en_US",
        status=Template.Status.APPROVED,
        components=[{"type": "BODY", "text": "Hi {{1}}, welcome aboard!"}],
    )
    return fake_graph


def make_drip(account, owner, steps, **fields) -> Drip:
    data = {"name": "Nurture", "stop_on_reply": False, "stop_on_conversion": False, **fields, "steps": steps}
    return services.drip_create(account=account, user=owner, data=data)


def text(body, amount=0, unit="minutes") -> dict:
    return {"delay_amount": amount, "delay_unit": unit, "text": body}


def template(amount=0, unit="minutes", params=("{{name}}",)) -> dict:
    return {"delay_amount": amount, "delay_unit": unit, "template_name": "welcome", "template_params": list(params)}


def lead(account, **fields) -> Lead:
    # Wrote an hour before T0: the 24-hour window is open at T0.
    return LeadFactory(account=account, last_inbound_at=T0 - timedelta(hours=1), **fields)


def enroll(drip, owner, leads, now=T0):
    return services.drip_enroll(drip=drip, user=owner, lead_ids=[x.pk for x in leads], now=now)


def run(now) -> int:
    return services.enrollments_process_due(now=now)


def deliver() -> dict:
    """The delivery task, on every queued outbound message (as the worker would)."""
    ids = [str(pk) for pk in Message.objects.filter(status="queued", direction="outbound").values_list("pk", flat=True)]
    return drip_tasks.deliver_step_messages(ids) if ids else {}


def received(fake_graph) -> list[dict]:
    return fake_graph.sent_messages()


def per_step(fake_graph) -> Counter:
    """Requests at the fake Graph server per (enrollment, step)."""
    by_id = {str(m.pk): (m.enrollment_id, m.drip_step) for m in Message.objects.filter(source="drip")}
    return Counter(by_id[body["biz_opaque_callback_data"]] for body in received(fake_graph))


def fresh(enrollment) -> Enrollment:
    return Enrollment.objects.get(pk=enrollment.pk)


# --- Order and delays ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_steps_go_out_in_order_after_their_delays(account, owner, cloud):
    drip = make_drip(
        account,
        owner,
        [text("Hello {{first_name}}"), template(amount=2, unit="hours"), template(amount=1, unit="days")],
    )
    priya = lead(account, name="Priya Sharma")
    enroll(drip, owner, [priya])
    [enrollment] = Enrollment.objects.filter(drip=drip)

    timeline = [
        (T0, 1),
        (T0 + timedelta(hours=1, minutes=59), 0),
        (T0 + timedelta(hours=2), 1),
        (T0 + timedelta(hours=2, days=1) - timedelta(seconds=1), 0),
        (T0 + timedelta(hours=2, days=1), 1),
        (T0 + timedelta(days=30), 0),
    ]
    for now, expected in timeline:
        assert run(now) == expected, now
        deliver()

    bodies = received(cloud)
    assert [body["type"] for body in bodies] == ["text", "template", "template"]
    assert bodies[0]["text"]["body"] == "Hello Priya"
    assert bodies[1]["template"]["name"] == "welcome"
    assert bodies[1]["template"]["components"][0]["parameters"] == [{"type": "text", "text": "Priya Sharma"}]
    assert {body["to"] for body in bodies} == {priya.phone.lstrip("+")}
    messages = Message.objects.filter(enrollment=enrollment).order_by("drip_step")
    assert [(m.drip_step, m.status, m.source) for m in messages] == [
        (0, "sent", "drip"),
        (1, "sent", "drip"),
        (2, "sent", "drip"),
    ]
    assert messages[1].body == "Hi Priya Sharma, welcome aboard!"
    done = fresh(enrollment)
    assert (done.status, done.steps_sent, done.steps_skipped) == ("completed", 3, 0)
    assert done.finished_at == T0 + timedelta(hours=2, days=1) and done.next_due_at is None


@pytest.mark.django_db
def test_a_step_waits_while_the_previous_message_is_still_queued(account, owner, cloud):
    drip = make_drip(account, owner, [text("One"), text("Two")])  # no delay between them
    enroll(drip, owner, [lead(account)])
    [enrollment] = Enrollment.objects.filter(drip=drip)

    assert run(T0) == 1
    assert (fresh(enrollment).next_step, fresh(enrollment).next_due_at) == (1, T0)  # step 2 is due at once
    later = T0 + timedelta(minutes=1)
    assert run(later) == 0  # but step 1 has not gone out yet: step 2 waits
    assert fresh(enrollment).next_due_at == later + services.PREVIOUS_STEP_WAIT
    deliver()
    assert run(later + services.PREVIOUS_STEP_WAIT) == 1
    deliver()

    assert [body["text"]["body"] for body in received(cloud)] == ["One", "Two"]


# --- Exactly once -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_duplicate_runs_and_duplicate_delivery_tasks_send_nothing_twice(account, owner, cloud):
    drip = make_drip(account, owner, [text("Hi"), text("Again", amount=1, unit="hours")])
    enroll(drip, owner, [lead(account) for _ in range(5)])

    assert run(T0) == 5
    assert run(T0) == 0
    deliver()
    # A delivery task run twice (django-q2 delivers at least once): the claim holds.
    drip_tasks.deliver_step_messages([str(pk) for pk in Message.objects.values_list("pk", flat=True)])
    # A replayed step (its enrollment put back) finds its message already there.
    Enrollment.objects.filter(drip=drip).update(next_step=0, next_due_at=T0)
    assert run(T0) == 0
    deliver()

    assert set(per_step(cloud).values()) == {1} and len(per_step(cloud)) == 5
    assert Message.objects.filter(source="drip").count() == 5
    assert set(Enrollment.objects.filter(drip=drip).values_list("steps_sent", flat=True)) == {1}


@pytest.mark.django_db(transaction=True)
def test_two_runners_at_once_create_each_step_once(account, owner, cloud, purged_broker):
    drip = make_drip(account, owner, [text("Hi")])
    enroll(drip, owner, [lead(account) for _ in range(60)])
    barrier = threading.Barrier(2)
    results, errors = [], []

    def runner():
        try:
            barrier.wait()
            results.append(services.enrollments_process_due(now=T0, batch_size=7))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sum(results) == 60
    assert Message.objects.filter(source="drip").count() == 60
    assert set(Enrollment.objects.values_list("status", "steps_sent")) == {("completed", 1)}


@pytest.mark.django_db
def test_the_runner_hands_its_messages_to_delivery_after_commit(
    account, owner, cloud, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kw: queued.append((func, args)))
    drip = make_drip(account, owner, [text("Hi")])
    enroll(drip, owner, [lead(account) for _ in range(3)])

    with django_capture_on_commit_callbacks(execute=True):
        assert run(T0) == 3

    deliveries = [args for func, args in queued if func == services.DELIVER_TASK]
    assert len(deliveries) == 1
    assert sorted(deliveries[0][0]) == sorted(str(pk) for pk in Message.objects.values_list("pk", flat=True))


@pytest.mark.django_db
def test_the_dispatcher_runs_the_drip_runner(account, owner, cloud):
    drip = make_drip(account, owner, [text("Hi")])
    now = timezone.now()
    leads = [LeadFactory(account=account, last_inbound_at=now - timedelta(hours=1)) for _ in range(2)]
    enroll(drip, owner, leads, now=now - timedelta(minutes=1))

    done = campaign_tasks.dispatch_due()

    assert done["drips"] == 2
    assert Message.objects.filter(source="drip", enrollment__drip=drip).count() == 2


# --- Stop rules ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_opted_out_lead_is_stopped_at_the_next_run_and_gets_nothing(account, owner, cloud):
    drip = make_drip(account, owner, [text("Hi", amount=1), text("Again", amount=1)])
    stays, leaves = lead(account), lead(account)
    enroll(drip, owner, [stays, leaves])
    lead_opt_out(lead=leaves, reason="STOP")

    assert run(T0 + timedelta(minutes=1)) == 1
    deliver()

    stopped = Enrollment.objects.get(lead=leaves)
    assert (stopped.status, stopped.stop_reason, stopped.next_due_at) == ("stopped", "opted_out", None)
    assert {body["to"] for body in received(cloud)} == {stays.phone.lstrip("+")}


@pytest.mark.django_db
def test_a_lead_who_opts_out_after_its_step_was_queued_gets_nothing(account, owner, cloud):
    drip = make_drip(account, owner, [text("Hi")])
    target = lead(account)
    enroll(drip, owner, [target])
    run(T0)
    lead_opt_out(lead=target, reason="STOP")

    deliver()

    assert received(cloud) == []
    assert Message.objects.get(lead=target).error_code == "OPT_OUT"


@pytest.mark.parametrize("stop_on_reply", [True, False])
@pytest.mark.django_db
def test_a_reply_stops_the_enrollment_when_the_drip_says_so(account, owner, cloud, stop_on_reply):
    drip = make_drip(account, owner, [text("Hi", amount=10)], stop_on_reply=stop_on_reply)
    writer, silent = lead(account), lead(account)
    enroll(drip, owner, [writer, silent])
    Lead.objects.filter(pk=writer.pk).update(last_inbound_at=T0 + timedelta(minutes=5))  # after enrolling

    sent = run(T0 + timedelta(minutes=10))

    replied = Enrollment.objects.get(lead=writer)
    assert Enrollment.objects.get(lead=silent).status == "completed"
    if stop_on_reply:
        assert (sent, replied.status, replied.stop_reason) == (1, "stopped", "replied")
    else:
        assert (sent, replied.status, replied.stop_reason) == (2, "completed", "")


@pytest.mark.parametrize("stop_on_conversion", [True, False])
@pytest.mark.django_db
def test_a_conversion_stops_the_enrollment_when_the_drip_says_so(account, owner, cloud, stop_on_conversion):
    drip = make_drip(account, owner, [template(amount=1, unit="days")], stop_on_conversion=stop_on_conversion)
    buyer = lead(account)
    enroll(drip, owner, [buyer])
    Lead.objects.filter(pk=buyer.pk).update(status=Lead.Status.CONVERTED)

    sent = run(T0 + timedelta(days=1))

    enrollment = Enrollment.objects.get(lead=buyer)
    if stop_on_conversion:
        assert (sent, enrollment.status, enrollment.stop_reason) == (0, "stopped", "converted")
    else:
        assert (sent, enrollment.status) == (1, "completed")


@pytest.mark.django_db
def test_the_stop_sweeps_cover_enrollments_that_are_not_due(account, owner, cloud):
    drip = make_drip(account, owner, [text("Hi", amount=30, unit="days")], stop_on_reply=True)
    out, writer = lead(account), lead(account)
    enroll(drip, owner, [out, writer])
    Lead.objects.filter(pk=out.pk).update(is_opted_out=True)
    Lead.objects.filter(pk=writer.pk).update(last_inbound_at=T0 + timedelta(seconds=1))

    assert run(T0 + timedelta(minutes=1)) == 0

    assert dict(Enrollment.objects.values_list("lead_id", "stop_reason")) == {
        out.pk: "opted_out",
        writer.pk: "replied",
    }


# --- Inactive drips, edits ----------------------------------------------------------------------


@pytest.mark.django_db
def test_an_inactive_drip_pauses_and_resumes_where_it_was(account, owner, cloud):
    drip = make_drip(account, owner, [text("Hi", amount=5), text("Later", amount=1, unit="hours")])
    enroll(drip, owner, [lead(account)])
    services.drip_update(drip=drip, user=owner, data={"is_active": False})

    assert run(T0 + timedelta(hours=5)) == 0
    paused = Enrollment.objects.get(drip=drip)
    assert (paused.status, paused.next_step, paused.next_due_at) == ("active", 0, T0 + timedelta(minutes=5))

    services.drip_update(drip=drip, user=owner, data={"is_active": True})
    assert run(T0 + timedelta(hours=6)) == 1
    assert fresh(paused).next_due_at == T0 + timedelta(hours=7)  # the next delay counts from the send


@pytest.mark.django_db
def test_edited_steps_apply_from_each_enrollments_next_step(account, owner, cloud):
    drip = make_drip(account, owner, [text("Old one"), text("Old two", amount=1, unit="hours"), text("Old three")])
    enroll(drip, owner, [lead(account)])
    run(T0)
    deliver()

    services.drip_update(
        drip=drip, user=owner, data={"steps": [text("New one"), text("New two", amount=3, unit="days")]}
    )
    enrollment = Enrollment.objects.get(drip=drip)
    assert enrollment.next_due_at == T0 + timedelta(hours=1)  # the due time already set stays
    assert run(T0 + timedelta(hours=1)) == 1
    deliver()

    assert [body["text"]["body"] for body in received(cloud)] == ["Old one", "New two"]
    assert (fresh(enrollment).status, fresh(enrollment).steps_sent) == ("completed", 2)


@pytest.mark.django_db
def test_a_drip_shortened_below_an_enrollments_place_completes_it(account, owner, cloud):
    drip = make_drip(account, owner, [text("One"), text("Two", amount=1)])
    enroll(drip, owner, [lead(account)])
    run(T0)
    services.drip_update(drip=drip, user=owner, data={"steps": [text("Only")]})

    assert run(T0 + timedelta(minutes=1)) == 0
    assert Enrollment.objects.get(drip=drip).status == "completed"


# --- Skipped steps ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_text_step_outside_the_24_hour_window_is_skipped_and_counted(account, owner, cloud):
    drip = make_drip(account, owner, [text("Free text"), template(amount=1, unit="hours")])
    quiet = LeadFactory(account=account, name="Ravi Kumar", last_inbound_at=T0 - timedelta(hours=25))
    enroll(drip, owner, [quiet])

    assert run(T0) == 0
    skipped = Enrollment.objects.get(lead=quiet)
    assert (skipped.next_step, skipped.steps_skipped, skipped.steps_sent) == (1, 1, 0)
    assert "24-hour window" in skipped.last_error
    assert run(T0 + timedelta(hours=1)) == 1  # a template may go at any time
    deliver()

    assert [body["type"] for body in received(cloud)] == ["template"]
    done = fresh(skipped)
    assert (done.status, done.steps_sent, done.steps_skipped, done.last_error) == ("completed", 1, 1, "")


@pytest.mark.django_db
def test_a_template_no_longer_approved_is_skipped(account, owner, cloud):
    drip = make_drip(account, owner, [template(), text("After", amount=1)])
    enroll(drip, owner, [lead(account)])
    Template.objects.filter(account=account, name="welcome").update(status=Template.Status.PAUSED)

    assert run(T0) == 0

    enrollment = Enrollment.objects.get(drip=drip)
    assert (enrollment.steps_skipped, enrollment.next_step) == (1, 1)
    assert "PAUSED" in enrollment.last_error


@pytest.mark.django_db
def test_a_template_parameter_empty_for_a_lead_skips_that_lead_only(account, owner, cloud):
    drip = make_drip(account, owner, [template(params=["{{email}}"])])
    with_email, without = lead(account, email="a@example.com"), lead(account, email="")
    enroll(drip, owner, [with_email, without])

    assert run(T0) == 1

    assert Enrollment.objects.get(lead=without).steps_skipped == 1
    assert Message.objects.get().template_params == ["a@example.com"]


# --- The send window ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_steps_due_outside_the_window_wait_for_its_next_start(account, owner, cloud):
    account.time_zone = "Asia/Kolkata"  # UTC+5:30
    account.save()
    drip = make_drip(account, owner, [template()], send_window_start=time(9), send_window_end=time(20))
    night = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)  # 21:30 in Kolkata
    enroll(drip, owner, [lead(account)], now=night)

    assert run(night) == 0
    opens = datetime(2026, 3, 3, 9, 0, tzinfo=ZoneInfo("Asia/Kolkata"))
    assert Enrollment.objects.get(drip=drip).next_due_at == opens
    assert run(opens - timedelta(seconds=1)) == 0
    assert run(opens) == 1


@pytest.mark.parametrize(
    "local,expected",
    [
        ("2026-03-02 08:59", "2026-03-02 09:00"),
        ("2026-03-02 09:00", None),
        ("2026-03-02 19:59", None),
        ("2026-03-02 20:00", "2026-03-03 09:00"),
        ("2026-03-02 23:30", "2026-03-03 09:00"),
    ],
)
def test_window_next_start_for_a_day_window(local, expected):
    zone = ZoneInfo("Europe/Berlin")
    drip = Drip(send_window_start=time(9), send_window_end=time(20))
    now = datetime.fromisoformat(local).replace(tzinfo=zone)

    opens = services.window_next_start(drip, zone, now)

    assert opens == (datetime.fromisoformat(expected).replace(tzinfo=zone) if expected else None)


@pytest.mark.parametrize(
    "local,expected",
    [
        ("2026-03-02 12:00", "2026-03-02 20:00"),
        ("2026-03-02 21:00", None),
        ("2026-03-03 07:59", None),
        ("2026-03-03 08:00", "2026-03-03 20:00"),
    ],
)
def test_window_next_start_for_a_window_over_midnight(local, expected):
    zone = ZoneInfo("America/New_York")
    drip = Drip(send_window_start=time(20), send_window_end=time(8))
    now = datetime.fromisoformat(local).replace(tzinfo=zone)

    opens = services.window_next_start(drip, zone, now)

    assert opens == (datetime.fromisoformat(expected).replace(tzinfo=zone) if expected else None)


def test_the_window_follows_daylight_saving_time():
    zone = ZoneInfo("America/New_York")  # clocks go forward on 2026-03-08
    drip = Drip(send_window_start=time(9), send_window_end=time(17))
    saturday_night = datetime(2026, 3, 7, 23, 0, tzinfo=zone)

    opens = services.window_next_start(drip, zone, saturday_night)

    assert opens.astimezone(UTC) == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)  # 09:00 EDT, not EST


# --- Cost ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_runner_costs_the_same_queries_for_4_or_30_due_enrollments(account, owner, cloud):
    def queries(count: int, now) -> int:
        drip = make_drip(account, owner, [text("Hi {{name}}"), template(amount=1)])
        enroll(drip, owner, [lead(account) for _ in range(count)], now=now)
        with CaptureQueriesContext(connection) as captured:
            assert run(now) == count
        # The template step too, with its per-lead parameter.
        with CaptureQueriesContext(connection) as second:
            deliver_ids = list(Message.objects.filter(status="queued").values_list("pk", flat=True))
            Message.objects.filter(pk__in=deliver_ids).update(status="sent")
            assert run(now + timedelta(minutes=1)) == count
        return len(captured) + len(second)

    few = queries(4, T0)
    many = queries(30, T0 + timedelta(hours=1))

    assert many == few


@pytest.mark.django_db
def test_a_big_batch_is_processed_in_several_transactions(account, owner, cloud):
    drip = make_drip(account, owner, [text("Hi")])
    enroll(drip, owner, [lead(account) for _ in range(23)])

    assert services.enrollments_process_due(now=T0, batch_size=5) == 23

    assert set(Enrollment.objects.values_list("status", flat=True)) == {"completed"}
    assert DripStep.objects.filter(drip=drip).count() == 1


@pytest.mark.django_db
def test_an_enrollment_that_fails_to_prepare_is_set_aside_and_the_others_go_on(account, owner, cloud, monkeypatch):
    drip = make_drip(account, owner, [template()])
    broken, fine = lead(account, name="Broken Row"), lead(account, name="Fine Row")
    enroll(drip, owner, [broken, fine])
    real = services._render_template_body

    def render(template, params):
        if params == ["Broken Row"]:
            raise ValueError("malformed template components")
        return real(template, params)

    monkeypatch.setattr(services, "_render_template_body", render)

    assert run(T0) == 1

    assert Message.objects.get().lead_id == fine.pk
    aside = Enrollment.objects.get(lead=broken)
    assert (aside.status, aside.next_step, aside.next_due_at) == ("active", 0, T0 + services.POISON_RETRY)
    assert "tried again later" in aside.last_error
