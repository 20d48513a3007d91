"""Drips with a real django-q2 cluster: due enrollments are taken by
campaigns.tasks.dispatch_due (queued here every second, standing in for its
every-minute schedule), their steps delivered to the fake Graph API server, and the
cluster is killed with SIGKILL mid-way and restarted: every step of every lead
reaches the server exactly once, in order. And step timing: with next_due_at moved by
hand, the cluster's own every-minute schedule sends a step when it is due, not before."""

import subprocess
import time
from collections import Counter
from datetime import timedelta
from typing import IO

import pytest
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from campaigns.models import Enrollment
from campaigns.services import drips as services
from leads.tests.factories import LeadFactory
from messaging import tasks as messaging_tasks
from messaging.models import Message
from tests import workers
from tests.fake_graph import FakeGraphServer
from tests.workers import cluster_log, echo_sent_statuses, kill_cluster, wait_for

LEADS = 40
STEPS = 2
CLAIM_TIMEOUT = 3


def start_cluster(fake_graph: FakeGraphServer, log: IO[bytes]) -> subprocess.Popen:
    return workers.start_cluster(
        log,
        WHATSAPP_GRAPH_URL=fake_graph.base_url,
        MESSAGE_CLAIM_TIMEOUT=str(CLAIM_TIMEOUT),
        Q_TIMEOUT=str(CLAIM_TIMEOUT - 1),
        Q_RETRY=str(CLAIM_TIMEOUT + 1),
        Q_WORKERS="2",
    )


def sends_per_step(fake_graph: FakeGraphServer) -> Counter:
    """Requests at the fake Graph server per (lead, step)."""
    steps = {str(m.pk): (m.lead_id, m.drip_step) for m in Message.objects.filter(source="drip")}
    return Counter(steps.get(body["biz_opaque_callback_data"], "unknown") for body in fake_graph.sent_messages())


def tick() -> None:
    """What the schedules do every minute, here every second: rescue abandoned
    deliveries (the sweeper), then run the dispatcher in the cluster."""
    messaging_tasks.requeue_stale_messages()
    async_task("campaigns.tasks.dispatch_due")


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_due_steps_go_out_once_each_through_a_killed_and_restarted_cluster(
    account, owner, whatsapp_connection, fake_graph, settings, purged_broker
):
    settings.MESSAGE_CLAIM_TIMEOUT = CLAIM_TIMEOUT  # for the sweeper, run here
    fake_graph.state.latency = 0.05  # ~20 sends a second per worker: time to kill it mid-way
    now = timezone.now()
    drip = services.drip_create(
        account=account,
        user=owner,
        data={
            "name": "Welcome",
            "stop_on_reply": False,
            "steps": [
                {"delay_amount": 0, "delay_unit": "minutes", "text": "Welcome, {{first_name}}"},
                {"delay_amount": 0, "delay_unit": "minutes", "text": "Here is what we offer"},
            ],
        },
    )
    leads = [LeadFactory(account=account, last_inbound_at=now - timedelta(hours=1)) for _ in range(LEADS)]
    result = services.drip_enroll(drip=drip, user=owner, lead_ids=[lead.pk for lead in leads])
    assert result.enrolled == LEADS
    wanted = {(lead.pk, step) for lead in leads for step in range(STEPS)}

    with cluster_log() as log:
        first = start_cluster(fake_graph, log)
        try:

            def some_sent() -> bool:
                tick()
                time.sleep(0.2)
                return len(fake_graph.sent_messages()) >= LEADS // 3

            wait_for(some_sent, timeout=90, what="the first step messages")
            kill_cluster(first)
            time.sleep(0.5)  # requests already on the wire land at the fake server
            reached = sends_per_step(fake_graph)
            assert 0 < sum(reached.values()) < LEADS * STEPS, "the cluster was not killed mid-way"

            echo_sent_statuses(fake_graph)  # Meta's status webhooks link the lost answers

            second = start_cluster(fake_graph, log)
            try:

                def all_done() -> bool:
                    finished = Enrollment.objects.filter(drip=drip, status=Enrollment.Status.COMPLETED).count()
                    if finished == LEADS and not Message.objects.filter(source="drip", status="queued").exists():
                        return True
                    tick()
                    time.sleep(1)
                    return False

                wait_for(all_done, timeout=150, what="every step of every lead sent")
                time.sleep(1.5)  # duplicate tasks still in flight get their chance to misbehave
            finally:
                kill_cluster(second)
        finally:
            kill_cluster(first)

    per_step = sends_per_step(fake_graph)
    assert set(per_step) == wanted, "a step was lost (or an unknown message was sent)"
    assert [key for key, n in per_step.items() if n > 1] == [], "a step was sent twice"
    assert set(Enrollment.objects.filter(drip=drip).values_list("steps_sent", "steps_skipped")) == {(STEPS, 0)}
    # In order: each lead's second step reached the server after its first.
    order = {}
    for body in fake_graph.sent_messages():
        message = Message.objects.get(pk=body["biz_opaque_callback_data"])
        order.setdefault(message.lead_id, []).append(message.drip_step)
    assert all(steps == [0, 1] for steps in order.values())


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_the_minute_dispatcher_sends_a_step_when_it_falls_due_and_not_before(
    account, owner, whatsapp_connection, fake_graph, purged_broker, monkeypatch
):
    """Drip timing, the clock moved by hand: the runner reads timezone.now() in the
    worker, so a step is made due (or not) through its enrollment's ``next_due_at``.
    The cluster's own every-minute schedule (campaigns.tasks.dispatch_due) sends the
    due step, not the one a day ahead; moved into the past, that one goes out at the
    dispatcher's next run; each once."""
    monkeypatch.setattr("campaigns.services._dispatcher_seen_until", 0.0)  # as in a fresh process
    recent = timezone.now() - timedelta(hours=1)
    drip = services.drip_create(
        account=account,
        user=owner,
        data={
            "name": "Timed",
            "stop_on_reply": False,
            "steps": [
                {"delay_amount": 1, "delay_unit": "days", "text": "Day one, {{first_name}}"},
                {"delay_amount": 2, "delay_unit": "days", "text": "Day three"},
            ],
        },
    )
    due_lead = LeadFactory(account=account, last_inbound_at=recent)
    later_lead = LeadFactory(account=account, last_inbound_at=recent)
    result = services.drip_enroll(drip=drip, user=owner, lead_ids=[due_lead.pk, later_lead.pk])
    assert result.enrolled == 2
    due = Enrollment.objects.get(drip=drip, lead=due_lead)
    later = Enrollment.objects.get(drip=drip, lead=later_lead)
    assert due.next_due_at > timezone.now() + timedelta(hours=23)  # step 1 waits its day
    # A day passes for one of them: its first step is due a minute ago.
    Enrollment.objects.filter(pk=due.pk).update(next_due_at=timezone.now() - timedelta(minutes=1))
    later_due_at = later.next_due_at
    dispatcher = Schedule.objects.get(func="campaigns.tasks.dispatch_due")  # made by the enrolment

    def steps_of(lead) -> list[int]:
        ids = {str(pk): step for pk, step in Message.objects.filter(lead=lead).values_list("pk", "drip_step")}
        return [
            ids[body["biz_opaque_callback_data"]]
            for body in fake_graph.sent_messages()
            if body["biz_opaque_callback_data"] in ids
        ]

    with cluster_log() as log:
        cluster = workers.start_cluster(log, WHATSAPP_GRAPH_URL=fake_graph.base_url, Q_WORKERS="2")
        try:
            # django-q2's scheduler looks every 30 s: the schedule runs at its first look.
            wait_for(lambda: steps_of(due_lead) == [0], timeout=90, what="the due step", interval=0.2)
            first_sent = timezone.now()
            wait_for(
                lambda: Schedule.objects.filter(pk=dispatcher.pk, next_run__gt=dispatcher.next_run).exists(),
                timeout=30,
                what="the dispatcher's run to be recorded",
            )
            due.refresh_from_db()
            assert (due.next_step, due.steps_sent, due.status) == (1, 1, Enrollment.Status.ACTIVE)
            # The second step waits its 2 days from the first one's send.
            assert abs(due.next_due_at - (first_sent + timedelta(days=2))) < timedelta(seconds=60)
            later.refresh_from_db()
            assert (later.next_step, later.steps_sent, later.next_due_at) == (0, 0, later_due_at)
            assert steps_of(later_lead) == []

            # Two days pass: the second step is due; the dispatcher's next run sends it.
            Enrollment.objects.filter(pk=due.pk).update(next_due_at=timezone.now() - timedelta(seconds=1))
            Schedule.objects.filter(pk=dispatcher.pk).update(next_run=timezone.now())
            wait_for(lambda: steps_of(due_lead) == [0, 1], timeout=60, what="the second step", interval=0.2)
            wait_for(
                lambda: Enrollment.objects.filter(pk=due.pk, status=Enrollment.Status.COMPLETED).exists(),
                timeout=30,
                what="the enrollment to complete",
            )
            time.sleep(3)  # stray duplicates get their chance
        finally:
            kill_cluster(cluster)

    assert steps_of(due_lead) == [0, 1]
    assert steps_of(later_lead) == []
    assert len(fake_graph.sent_messages()) == 2
    due.refresh_from_db()
    assert (due.steps_sent, due.status, due.next_due_at) == (2, Enrollment.Status.COMPLETED, None)
    later.refresh_from_db()
    assert (later.next_step, later.status, later.next_due_at) == (0, Enrollment.Status.ACTIVE, later_due_at)
