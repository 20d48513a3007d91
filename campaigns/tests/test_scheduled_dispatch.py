"""Dispatching scheduled messages: a due occurrence goes out once, with an explicit
clock (``now=``) passed to the services; what is not due, cancelled or deleted sends
nothing; recurrence creates exactly one next occurrence at the right wall-clock time
across DST changes and short months. Sends are counted where they land: at the fake
Graph API server on 127.0.0.1, through the real delivery path."""

import ast
import math
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from importlib import import_module

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import Schedule

from accounts.models import User
from accounts.tests.factories import UserFactory
from campaigns import tasks as campaign_tasks
from campaigns.models import ScheduledMessage
from campaigns.services import scheduled as services
from heroshhi.errors import ValidationFailed
from leads.models import Lead
from leads.tests.factories import LeadFactory
from messaging.models import Message, Template
from messaging.services import DELIVERY_BATCH_SIZE, TemplateRef
from messaging.tasks import deliver_messages

T0 = datetime(2027, 2, 10, 9, 0, tzinfo=UTC)  # a fixed clock: every test passes `now` explicitly


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def schedule(user: User, *, when: datetime = T0, recipients=("919800000001",), **fields) -> ScheduledMessage:
    """Created through the service an hour before its time."""
    fields.setdefault("message", "Hello {{name}}")
    return services.scheduled_message_create(
        user=user, recipients=list(recipients), scheduled_time=when, now=when - timedelta(hours=1), **fields
    )


def lead(account, phone: str, *, window_open: bool = True, **fields) -> Lead:
    """A lead who wrote two hours before T0 (window open) or three days before."""
    fields.setdefault("last_inbound_at", T0 - (timedelta(hours=2) if window_open else timedelta(days=3)))
    return LeadFactory(account=account, phone=phone, **fields)


def sends_per_phone(fake_graph) -> Counter:
    return Counter(body["to"] for body in fake_graph.sent_messages())


@pytest.fixture
def inline_tasks(monkeypatch, django_capture_on_commit_callbacks):
    """Tasks queued on commit run right away in this process (the worker's code, no
    broker): ``with inline_tasks(): …``."""
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kwargs: import_string(func)(*args))
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def dispatch(inline_tasks):
    def run(scheduled: ScheduledMessage, now: datetime | None = None):
        with inline_tasks():
            return services.scheduled_message_dispatch(
                scheduled_message_id=scheduled.pk, now=now or scheduled.scheduled_time + timedelta(seconds=1)
            )

    return run


# --- Due, not due, once ------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_due_occurrence_goes_and_one_not_due_stays(owner, account, whatsapp_connection, fake_graph, inline_tasks):
    lead(account, "+919800000001", name="Asha")
    lead(account, "+919800000002", name="Ravi")
    due = schedule(owner, when=T0, recipients=["919800000001"])
    not_due = schedule(owner, when=T0 + timedelta(minutes=10), recipients=["919800000002"])

    with inline_tasks():
        dispatched = services.scheduled_messages_dispatch_due(now=T0 + timedelta(seconds=5))

    assert dispatched == 1
    assert sends_per_phone(fake_graph) == {"919800000001": 1}
    assert [body["text"]["body"] for body in fake_graph.sent_messages()] == ["Hello Asha"]
    due.refresh_from_db()
    not_due.refresh_from_db()
    assert (due.status, due.queued, due.sent_at) == ("sent", 1, T0 + timedelta(seconds=5))
    assert (not_due.status, not_due.queued) == ("pending", 0)
    assert not Message.objects.filter(scheduled_message=not_due).exists()
    [message] = Message.objects.filter(scheduled_message=due)
    assert (message.status, message.source, message.sent_by_id) == ("sent", "scheduled", owner.pk)

    # A second before its time it is still not due; at its time it goes.
    with inline_tasks():
        assert services.scheduled_messages_dispatch_due(now=not_due.scheduled_time - timedelta(seconds=1)) == 0
        assert services.scheduled_messages_dispatch_due(now=not_due.scheduled_time) == 1
    assert sends_per_phone(fake_graph) == {"919800000001": 1, "919800000002": 1}


@pytest.mark.django_db
def test_a_duplicate_dispatch_sends_once(owner, account, whatsapp_connection, fake_graph, dispatch, inline_tasks):
    for n in (1, 2, 3):
        lead(account, f"+91980000000{n}")
    scheduled = schedule(owner, recipients=["919800000001", "919800000002", "919800000003"])

    first = dispatch(scheduled)
    # Its one-off schedule, the minute's safety net and a re-run task all arrive too.
    assert dispatch(scheduled) is None
    with inline_tasks():
        assert services.scheduled_messages_dispatch_due(now=T0 + timedelta(minutes=1)) == 0
    # django-q2 runs the delivery task again.
    deliver_messages([str(pk) for pk in first.message_ids])

    assert first.queued == 3
    assert sends_per_phone(fake_graph) == {"919800000001": 1, "919800000002": 1, "919800000003": 1}
    assert Message.objects.filter(scheduled_message=scheduled).count() == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_dispatchers_take_an_occurrence_once(owner, account, purged_broker):
    for n in (1, 2):
        lead(account, f"+91980000000{n}")
    scheduled = schedule(owner, recipients=["919800000001", "919800000002"])
    barrier = threading.Barrier(4)
    results = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(
                services.scheduled_message_dispatch(scheduled_message_id=scheduled.pk, now=T0 + timedelta(seconds=1))
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) == 4
    assert len([r for r in results if r is not None]) == 1
    assert Message.objects.filter(scheduled_message=scheduled).count() == 2


@pytest.mark.django_db
def test_cancelled_and_deleted_ones_send_nothing_when_their_schedules_fire(
    owner, account, whatsapp_connection, fake_graph, inline_tasks
):
    now = timezone.now().replace(microsecond=0)
    for n in (1, 2, 3):
        lead(account, f"+91980000000{n}", last_inbound_at=now - timedelta(hours=1))
    when = now - timedelta(seconds=30)  # due by the real clock: the tasks below use it
    kept = schedule(owner, when=when, recipients=["919800000001"])
    cancelled = schedule(owner, when=when, recipients=["919800000002"])
    deleted = schedule(owner, when=when, recipients=["919800000003"])
    services.scheduled_message_status_set(scheduled_message=cancelled, status="cancelled", now=when - timedelta(1))
    services.scheduled_message_delete(scheduled_message=deleted)

    # The one-off django-q2 run of their second fires, then the safety net runs.
    [one_off] = Schedule.objects.filter(func=services.DISPATCH_DUE_FUNC)
    assert one_off.next_run == when
    with inline_tasks():
        assert import_string(one_off.func)(*ast.literal_eval(one_off.args)) == "1 dispatched"
        assert services.scheduled_messages_dispatch_due() == 0
    kept.refresh_from_db()
    assert (kept.status, kept.queued) == ("sent", 1)

    assert sends_per_phone(fake_graph) == {"919800000001": 1}
    assert not Message.objects.filter(lead__phone__in=["+919800000002", "+919800000003"]).exists()
    cancelled.refresh_from_db()
    assert (cancelled.status, cancelled.queued) == ("cancelled", 0)
    assert not ScheduledMessage.objects.filter(pk=deleted.pk).exists()


@pytest.mark.django_db
def test_the_every_minute_dispatcher_drives_scheduled_messages(owner, account, monkeypatch):
    # Only the scheduled-messages part of the dispatcher is under test here.
    monkeypatch.setattr("campaigns.services.broadcasts.broadcasts_start_due", lambda: 0)
    monkeypatch.setattr("campaigns.services.drips.enrollments_process_due", lambda: 0)
    now = timezone.now().replace(microsecond=0)
    lead(account, "+919800000001", last_inbound_at=now - timedelta(hours=1))
    scheduled = schedule(owner, when=now - timedelta(seconds=30))

    done = campaign_tasks.dispatch_due()

    assert done["scheduled"] == 1
    scheduled.refresh_from_db()
    assert scheduled.status == "sent"
    assert Message.objects.filter(scheduled_message=scheduled, status="queued").count() == 1


# --- Who gets it -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_opted_out_and_closed_windows_are_skipped_and_counted(
    owner, account, whatsapp_connection, fake_graph, dispatch
):
    lead(account, "+919800000001", name="Open")
    lead(account, "+919800000002", name="Gone", is_opted_out=True, opted_out_at=T0 - timedelta(days=1))
    lead(account, "+919800000003", name="Quiet", window_open=False)
    scheduled = schedule(owner, recipients=["919800000001", "919800000002", "919800000003", "919800000004"])

    result = dispatch(scheduled)

    assert (result.queued, result.skipped_opted_out, result.skipped_window_closed, result.skipped_invalid) == (
        1,
        1,
        2,  # Quiet, and the new contact (who never wrote)
        0,
    )
    assert sends_per_phone(fake_graph) == {"919800000001": 1}
    scheduled.refresh_from_db()
    assert (scheduled.status, scheduled.skipped_opted_out, scheduled.skipped_window_closed) == ("sent", 1, 2)
    # The unknown phone became a lead, as HeyDoc's send_message does.
    created = Lead.objects.get(account=account, phone="+919800000004")
    assert (created.name, created.source) == ("919800000004", "api")


@pytest.mark.django_db
def test_a_template_reaches_closed_windows_but_never_opted_out_contacts(
    owner, account, whatsapp_connection, fake_graph, dispatch
):
    Template.objects.create(
        account=account,
        name="greeting",
        language="en_US",
        status=Template.Status.APPROVED,
        components=[{"type": "BODY", "text": "Hi {{1}}, see you soon."}],
    )
    lead(account, "+919800000001", name="Asha", window_open=False)
    lead(account, "+919800000002", name="Gone", window_open=False, is_opted_out=True)
    scheduled = schedule(
        owner,
        message="",
        template=TemplateRef("greeting", "en_US", ["{{name}}"]),
        recipients=["919800000001", "919800000002", "919800000003"],
    )

    result = dispatch(scheduled)

    assert (result.queued, result.skipped_opted_out, result.skipped_window_closed) == (2, 1, 0)
    sent = {body["to"]: body for body in fake_graph.sent_messages()}
    assert set(sent) == {"919800000001", "919800000003"}
    assert sent["919800000001"]["template"]["name"] == "greeting"
    assert sent["919800000001"]["template"]["components"][0]["parameters"] == [{"type": "text", "text": "Asha"}]
    bodies = dict(Message.objects.filter(scheduled_message=scheduled).values_list("lead__phone", "body"))
    assert bodies == {"+919800000001": "Hi Asha, see you soon.", "+919800000003": "Hi 919800000003, see you soon."}


@pytest.mark.django_db
def test_a_template_no_longer_approved_fails_the_occurrence_visibly(owner, account, dispatch):
    template = Template.objects.create(account=account, name="greeting", status=Template.Status.APPROVED)
    lead(account, "+919800000001")
    scheduled = schedule(owner, message="", template=TemplateRef("greeting"))
    template.status = Template.Status.PAUSED
    template.save()

    result = dispatch(scheduled)

    assert result.status == "failed"
    scheduled.refresh_from_db()
    assert scheduled.status == "failed"
    assert "PAUSED" in scheduled.error
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_an_opt_out_after_dispatch_stops_the_message_before_meta(
    owner, account, whatsapp_connection, fake_graph, inline_tasks
):
    target = lead(account, "+919800000001")
    scheduled = schedule(owner)
    result = services.scheduled_message_dispatch(scheduled_message_id=scheduled.pk, now=T0)  # delivery not run yet
    Lead.objects.filter(pk=target.pk).update(is_opted_out=True)

    deliver_messages([str(pk) for pk in result.message_ids])

    assert fake_graph.sent_messages() == []
    assert Message.objects.get(scheduled_message=scheduled).error_code == "OPT_OUT"


@pytest.mark.django_db
def test_nothing_to_send_fails_the_occurrence_with_the_reason(owner, account, dispatch):
    lead(account, "+919800000001", is_opted_out=True)
    lead(account, "+919800000002", window_open=False)
    scheduled = schedule(owner, recipients=["919800000001", "919800000002"])

    result = dispatch(scheduled)

    assert result.status == "failed"
    scheduled.refresh_from_db()
    assert scheduled.status == "failed"
    assert scheduled.error.startswith("Nothing to send: 1 opted out, 1 outside the 24-hour window")
    assert scheduled.queued == 0


@pytest.mark.django_db
def test_an_agents_message_skips_a_contact_reassigned_to_a_colleague(owner, agent, account, dispatch):
    mine = lead(account, "+919800000001", assigned_to=agent)
    theirs = lead(account, "+919800000002", assigned_to=agent)
    scheduled = schedule(agent, recipients=["919800000001", "919800000002"])
    theirs.assigned_to = UserFactory(account=account, role=User.Role.AGENT)
    theirs.save()

    result = dispatch(scheduled)

    assert (result.queued, result.skipped_invalid) == (1, 1)
    assert list(Message.objects.filter(scheduled_message=scheduled).values_list("lead_id", flat=True)) == [mine.pk]


@pytest.mark.django_db
def test_dispatch_costs_a_constant_number_of_queries_whatever_the_recipients(owner, account, dispatch):
    def scheduled_for(count: int, offset: int) -> ScheduledMessage:
        phones = [f"+9198{offset + n:08d}" for n in range(count)]
        for phone in phones[: count // 2]:  # half known (some opted out), half new
            lead(account, phone, is_opted_out=phone.endswith("7"))
        return schedule(owner, recipients=[p.lstrip("+") for p in phones])

    def run(scheduled: ScheduledMessage) -> tuple[list[str], int, services.DispatchResult]:
        with CaptureQueriesContext(connection) as captured:
            result = services.scheduled_message_dispatch(
                scheduled_message_id=scheduled.pk, now=T0 + timedelta(seconds=1)
            )
        statements = [q["sql"].lstrip().split()[0].upper() for q in captured.captured_queries]
        return [s for s in statements if s != "INSERT"], statements.count("INSERT"), result

    small_others, _, small = run(scheduled_for(6, 0))
    large_others, large_inserts, large = run(scheduled_for(300, 1000))

    assert small.queued > 0 and large.queued > 100
    assert large_others == small_others
    # INSERTs are set-based: one per batch that the database's parameter limit allows
    # (one in all on PostgreSQL), never one per recipient.
    new_leads = [Lead(account=account, phone="+919999999999", name="x")] * 150
    rows = [Message()] * large.queued
    batches = math.ceil(150 / connection.ops.bulk_batch_size(Lead._meta.concrete_fields, new_leads)) + math.ceil(
        large.queued / connection.ops.bulk_batch_size(Message._meta.concrete_fields, rows)
    )
    assert large_inserts <= batches


# --- Recurrence --------------------------------------------------------------------------------


def chain(first: ScheduledMessage, dispatch, hops: int) -> list[str]:
    """Dispatches ``hops`` occurrences at their times; answers every occurrence's time."""
    times = [first.scheduled_time]
    current = first
    for _ in range(hops):
        result = dispatch(current)
        assert result is not None
        current = result.next_occurrence
        times.append(current.scheduled_time)
    return [t.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ") for t in times]


@pytest.mark.django_db
def test_daily_keeps_the_wall_clock_across_the_spring_dst_change(owner, account, dispatch):
    account.time_zone = "America/New_York"  # DST starts 14 March 2027
    account.save()
    first = schedule(owner, when=at("2027-03-13T14:00:00Z"), recurrence="daily")  # 09:00 EST

    times = chain(first, dispatch, 2)

    assert times == ["2027-03-13T14:00Z", "2027-03-14T13:00Z", "2027-03-15T13:00Z"]  # 09:00 EST, EDT, EDT


@pytest.mark.django_db
def test_weekly_keeps_the_wall_clock_across_the_autumn_dst_change(owner, account, dispatch):
    account.time_zone = "Europe/London"  # BST ends 31 October 2027
    account.save()
    first = schedule(owner, when=at("2027-10-28T08:00:00Z"), recurrence="weekly")  # Thursday 09:00 BST

    assert chain(first, dispatch, 2) == ["2027-10-28T08:00Z", "2027-11-04T09:00Z", "2027-11-11T09:00Z"]


@pytest.mark.django_db
def test_a_time_skipped_by_dst_moves_forward_that_day_only(owner, account, dispatch):
    account.time_zone = "America/New_York"
    account.save()
    first = schedule(owner, when=at("2027-03-13T07:30:00Z"), recurrence="daily")  # 02:30 EST

    # 14 March has no 02:30: 03:30 EDT that day, 02:30 EDT again the next.
    assert chain(first, dispatch, 2) == ["2027-03-13T07:30Z", "2027-03-14T07:30Z", "2027-03-15T06:30Z"]


@pytest.mark.django_db
def test_monthly_on_the_31st_goes_on_the_last_day_of_shorter_months(owner, account, dispatch):
    account.time_zone = "Asia/Kolkata"
    account.save()
    first = schedule(owner, when=at("2027-01-31T04:30:00Z"), recurrence="monthly")  # 10:00 IST

    assert chain(first, dispatch, 3) == [
        "2027-01-31T04:30Z",
        "2027-02-28T04:30Z",
        "2027-03-31T04:30Z",
        "2027-04-30T04:30Z",
    ]


@pytest.mark.django_db
def test_a_naive_time_recurs_at_that_wall_clock_in_the_accounts_zone(owner, account, dispatch):
    account.time_zone = "America/New_York"
    account.save()
    first = services.scheduled_message_create(
        user=owner,
        message="Hi",
        recipients=["919800000001"],
        scheduled_time="2027-03-13T09:00:00",
        recurrence="daily",
        now=at("2027-03-01T00:00:00Z"),
    )

    assert chain(first, dispatch, 1) == ["2027-03-13T14:00Z", "2027-03-14T13:00Z"]


@pytest.mark.django_db
def test_occurrences_missed_while_nothing_ran_are_skipped_not_sent_in_a_burst(owner, account, dispatch):
    first = schedule(owner, when=T0, recurrence="daily")

    result = dispatch(first, now=T0 + timedelta(days=3, hours=2))

    assert result.next_occurrence.scheduled_time == T0 + timedelta(days=4)
    assert ScheduledMessage.objects.count() == 2


@pytest.mark.django_db
def test_a_recurring_occurrence_creates_exactly_one_next_one(owner, account, dispatch, inline_tasks):
    lead(account, "+919800000001")
    first = schedule(owner, recurrence="daily")

    result = dispatch(first)
    assert dispatch(first) is None
    # A manual close racing the dispatch, or a retried task, can't add a second one.
    assert services._next_occurrence_create(first, now=T0 + timedelta(seconds=2)) is None

    following = result.next_occurrence
    assert ScheduledMessage.objects.filter(previous=first).count() == 1
    assert ScheduledMessage.objects.count() == 2
    assert (following.status, following.recurrence, following.recipients) == ("pending", "daily", first.recipients)
    assert (following.message, following.created_by_id, following.account_id) == (
        first.message,
        owner.pk,
        account.pk,
    )
    # With a one-off run of the dispatcher at its time.
    assert Schedule.objects.filter(func=services.DISPATCH_DUE_FUNC, next_run=following.scheduled_time).exists()
    # Cancelling it stops the series: nothing goes and no further occurrence appears.
    services.scheduled_message_status_set(scheduled_message=following, status="cancelled", now=T0)
    assert dispatch(following) is None
    assert ScheduledMessage.objects.count() == 2


@pytest.mark.django_db
def test_a_failed_recurring_occurrence_still_schedules_the_next(owner, account, dispatch):
    lead(account, "+919800000001", is_opted_out=True)
    first = schedule(owner, recurrence="weekly")

    result = dispatch(first)

    assert result.status == "failed"
    assert result.next_occurrence.scheduled_time == T0 + timedelta(days=7)


# --- Variables and the safety net --------------------------------------------------------------


@pytest.mark.django_db
def test_variables_are_filled_in_per_lead_and_an_empty_template_parameter_skips_the_lead(
    owner, account, whatsapp_connection, fake_graph, dispatch
):
    Template.objects.create(
        account=account,
        name="greeting",
        language="en_US",
        status=Template.Status.APPROVED,
        components=[{"type": "BODY", "text": "Hi {{1}}, we'll write to {{2}}."}],
    )
    lead(account, "+919800000001", name="Asha Rao", email="asha@example.com")
    lead(account, "+919800000002", name="No Mail", email="")
    scheduled = schedule(
        owner,
        message="",
        template=TemplateRef("greeting", "en_US", ["{{first_name}}", "{{ email }}"]),
        recipients=["919800000001", "919800000002"],
    )

    result = dispatch(scheduled)

    assert (result.queued, result.skipped_invalid) == (1, 1)
    [sent] = fake_graph.sent_messages()
    parameters = sent["template"]["components"][0]["parameters"]
    assert [p["text"] for p in parameters] == ["Asha", "asha@example.com"]


@pytest.mark.django_db
def test_an_unknown_variable_is_refused_when_scheduling(owner):
    with pytest.raises(ValidationFailed) as refused:
        schedule(owner, message="Hi {{nmae}}")

    assert "{{nmae}}" in refused.value.errors["message"][0]
    assert not ScheduledMessage.objects.exists()


@pytest.mark.django_db
def test_the_safety_net_takes_every_due_one_in_batches_and_skips_one_that_raises(owner, account, monkeypatch):
    lead(account, "+919800000001")
    due = [schedule(owner, when=T0 + timedelta(seconds=n)) for n in range(5)]
    broken = due[1].pk
    real = services._outbox_rows

    def flaky(scheduled, **kwargs):
        if scheduled.pk == broken:
            raise RuntimeError("a bad row")
        return real(scheduled, **kwargs)

    monkeypatch.setattr(services, "_outbox_rows", flaky)

    assert services.scheduled_messages_dispatch_due(now=T0 + timedelta(minutes=1), batch=2) == 4

    statuses = dict(ScheduledMessage.objects.values_list("pk", "status"))
    assert statuses[broken] == "pending"  # left for the next run
    assert sorted(pk for pk, status in statuses.items() if status != "pending") == sorted(
        s.pk for s in due if s.pk != broken
    )
    # Its batch-mate went in the retry one at a time: each of the four has its message.
    assert Message.objects.filter(scheduled_message__in=[s for s in due if s.pk != broken]).count() == 4
    assert not Message.objects.filter(scheduled_message_id=broken).exists()


def many_due(owner, account, *, count: int, offset: int, when: datetime) -> list[ScheduledMessage]:
    """``count`` occurrences of one recipient each, all due at ``when``, every third
    one daily; their leads wrote two hours before (one in five has opted out)."""
    made = []
    for n in range(count):
        phone = f"9197{offset + n:08d}"
        lead(account, "+" + phone, is_opted_out=n % 5 == 4)
        made.append(schedule(owner, when=when, recipients=[phone], recurrence="daily" if n % 3 == 0 else "none"))
    return made


@pytest.mark.django_db
def test_occurrences_due_together_go_in_a_constant_number_of_queries_and_shared_delivery_batches(
    owner, account, monkeypatch, django_capture_on_commit_callbacks
):
    queued_tasks = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kwargs: queued_tasks.append((func, args)))

    def run(made: list[ScheduledMessage], now: datetime) -> tuple[list[str], Counter]:
        with CaptureQueriesContext(connection) as captured, django_capture_on_commit_callbacks(execute=True):
            assert services.scheduled_messages_dispatch_due(now=now) == len(made)
        statements = [q["sql"].lstrip().split()[0].upper() for q in captured.captured_queries]
        # Set-based writes: kept apart from the rest, which must not grow. An INSERT comes
        # in as many statements as the database's parameter limit needs (one on PostgreSQL).
        writes = Counter(s for s in statements if s in ("INSERT", "UPDATE"))
        others = [s for n, s in enumerate(statements) if s not in writes or (n and statements[n - 1] != s)]
        return others, writes

    run(many_due(owner, account, count=3, offset=0, when=T0), T0 + timedelta(seconds=1))  # warms this process
    sooner = T0 + timedelta(minutes=30)
    small_others, _ = run(many_due(owner, account, count=6, offset=100, when=sooner), sooner + timedelta(seconds=1))
    queued_tasks.clear()
    later = T0 + timedelta(hours=1)
    large = many_due(owner, account, count=250, offset=1000, when=later)
    large_others, large_writes = run(large, later + timedelta(seconds=1))

    assert large_others == small_others  # the same statements for 250 occurrences as for 6
    assert large_writes["UPDATE"] == 2  # the claims with their counts: one per outcome (sent, opted out)
    reachable = [s for n, s in enumerate(large) if n % 5 != 4]
    # The outbox messages, the series' next occurrences and the one-off run at their second.
    inserts = sum(
        math.ceil(count / connection.ops.bulk_batch_size(model._meta.concrete_fields, [model()] * count))
        for model, count in ((Message, len(reachable)), (ScheduledMessage, len(range(0, 250, 3))))
    )
    assert large_writes["INSERT"] <= inserts + 1
    messages = Message.objects.filter(scheduled_message__in=large)
    assert messages.count() == len(reachable)
    # Delivery is queued in full batches across occurrences, not a task per occurrence.
    assert [func for func, _ in queued_tasks] == ["messaging.tasks.deliver_messages"] * math.ceil(
        len(reachable) / DELIVERY_BATCH_SIZE
    )
    queued_ids = sorted(pk for _, (ids,) in queued_tasks for pk in ids)
    assert queued_ids == sorted(str(pk) for pk in messages.values_list("pk", flat=True))
    statuses = Counter(ScheduledMessage.objects.filter(pk__in=[s.pk for s in large]).values_list("status", flat=True))
    assert statuses == {"sent": len(reachable), "failed": len(large) - len(reachable)}
    following = ScheduledMessage.objects.filter(previous__in=large)
    assert following.count() == len(range(0, 250, 3))
    assert set(following.values_list("scheduled_time", flat=True)) == {later + timedelta(days=1)}


@pytest.mark.django_db
def test_occurrences_due_in_the_same_second_share_one_run_of_the_dispatcher(owner):
    first = schedule(owner, when=T0, recipients=["919800000001"])
    schedule(owner, when=T0, recipients=["919800000002"])
    schedule(owner, when=T0 + timedelta(seconds=1), recipients=["919800000003"])
    services.scheduled_message_status_set(scheduled_message=first, status="cancelled", now=T0 - timedelta(hours=1))
    services.scheduled_message_status_set(scheduled_message=first, status="pending", now=T0 - timedelta(hours=1))

    runs = Schedule.objects.filter(func=services.DISPATCH_DUE_FUNC).order_by("next_run")
    assert [(run.next_run, run.schedule_type, run.args) for run in runs] == [
        (T0, Schedule.ONCE, "()"),
        (T0 + timedelta(seconds=1), Schedule.ONCE, "()"),
    ]


@pytest.mark.django_db
def test_the_migration_turns_waiting_per_occurrence_schedules_into_runs_per_second():
    from django.apps import apps

    migration = import_module("campaigns.migrations.0003_one_dispatch_schedule_per_due_second")
    for pk, when in ((1, T0), (2, T0), (3, T0 + timedelta(minutes=5))):
        Schedule.objects.create(
            name=f"campaigns-scheduled-{pk}-{int(when.timestamp())}",
            func=migration.OLD_FUNC,
            args=repr((pk,)),
            schedule_type=Schedule.ONCE,
            next_run=when,
        )

    migration.forwards(apps, None)

    assert not Schedule.objects.filter(func=migration.OLD_FUNC).exists()
    runs = Schedule.objects.filter(func=services.DISPATCH_DUE_FUNC).order_by("next_run")
    assert [(run.next_run, run.args) for run in runs] == [(T0, "()"), (T0 + timedelta(minutes=5), "()")]
