"""Scheduled messages with a real django-q2 cluster (``manage.py qcluster``) against
the fake Graph API server: a message scheduled a few seconds ahead reaches WhatsApp
within 60 seconds of its time, exactly once; one cancelled before its time never does;
a daily one due now goes out once and leaves its next occurrence, pending, a day later
at the same wall-clock time in the account's time zone. With the cluster already running,
a message arrives within seconds of its time: ``manage.py qcluster`` looks for due
schedules every second, not django-q2's 30."""

import signal
import time
from collections import Counter
from datetime import UTC, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from django_q.models import Schedule

from campaigns.models import ScheduledMessage
from leads.tests.factories import LeadFactory
from messaging.models import Message
from tests import workers
from tests.workers import cluster_log, kill_cluster, wait_for

URL = "/api/scheduled-messages"
DEADLINE = 60  # seconds after scheduled_time, as the spec states


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings, monkeypatch):
    monkeypatch.setattr("campaigns.services._dispatcher_seen_until", 0.0)  # as in a fresh process
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "100000/15m"}


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_scheduled_message_arrives_once_within_a_minute_and_a_cancelled_one_never(
    owner_client, account, whatsapp_connection, fake_graph, purged_broker
):
    recent = timezone.now() - timedelta(hours=1)  # both contacts wrote lately: texts may go
    LeadFactory(account=account, phone="+919800000001", last_inbound_at=recent)
    LeadFactory(account=account, phone="+919800000002", last_inbound_at=recent)
    when = (timezone.now() + timedelta(seconds=6)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    kept = owner_client.post(
        URL, {"message": "See you at 5", "recipients": ["919800000001"], "scheduled_time": when}, format="json"
    )
    dropped = owner_client.post(
        URL, {"message": "Never mind", "recipients": ["919800000002"], "scheduled_time": when}, format="json"
    )
    assert kept.status_code == dropped.status_code == 201
    kept_id, dropped_id = kept.json()["data"]["id"], dropped.json()["data"]["id"]
    cancel = owner_client.put(f"{URL}/{dropped_id}/status", {"status": "cancelled"}, format="json")
    assert cancel.status_code == 200
    due_at = ScheduledMessage.objects.get(pk=kept_id).scheduled_time

    with cluster_log() as log:
        cluster = workers.start_cluster(log, WHATSAPP_GRAPH_URL=fake_graph.base_url, Q_WORKERS="2")
        try:
            remaining = (due_at + timedelta(seconds=DEADLINE) - timezone.now()).total_seconds()
            wait_for(
                lambda: len(fake_graph.sent_messages()) >= 1,
                timeout=remaining,
                what=f"the scheduled message at the fake Graph API within {DEADLINE} s of its time",
                interval=0.2,
            )
            arrived = timezone.now()
            # Their second's one-off run of the dispatcher has fired (django-q2 deletes it once run).
            wait_for(
                lambda: not Schedule.objects.filter(func="campaigns.tasks.scheduled.dispatch_due").exists(),
                timeout=60,
                what="the one-off schedule of their second to have fired",
            )
            # The every-minute safety net gets its turn as well, then time for stray duplicates.
            wait_for(
                lambda: Schedule.objects.filter(func="campaigns.tasks.dispatch_due", next_run__gt=arrived).exists(),
                timeout=90,
                what="the every-minute dispatcher to have run",
            )
            time.sleep(3)
        finally:
            kill_cluster(cluster)

    assert arrived - due_at <= timedelta(seconds=DEADLINE)
    assert Counter(body["to"] for body in fake_graph.sent_messages()) == {"919800000001": 1}
    assert [body["text"]["body"] for body in fake_graph.sent_messages()] == ["See you at 5"]
    assert ScheduledMessage.objects.get(pk=kept_id).status == "sent"
    assert ScheduledMessage.objects.get(pk=dropped_id).status == "cancelled"
    assert Message.objects.get(scheduled_message_id=kept_id).status == "sent"
    assert not Message.objects.filter(lead__phone="+919800000002").exists()


ZONE = "Asia/Kolkata"


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_daily_message_due_now_is_sent_once_and_its_next_occurrence_waits_a_day(
    owner_client, account, whatsapp_connection, fake_graph, purged_broker
):
    type(account).objects.filter(pk=account.pk).update(time_zone=ZONE)
    LeadFactory(account=account, phone="+919800000003", last_inbound_at=timezone.now() - timedelta(hours=1))
    # Due now, given as the account's wall-clock time without an offset.
    local_now = timezone.localtime(timezone.now(), ZoneInfo(ZONE)).replace(microsecond=0, tzinfo=None)
    created = owner_client.post(
        URL,
        {
            "message": "Daily reminder",
            "recipients": ["919800000003"],
            "scheduled_time": local_now.isoformat(),
            "recurrence": "daily",
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    first = ScheduledMessage.objects.get(pk=created.json()["data"]["id"])
    assert timezone.localtime(first.scheduled_time, ZoneInfo(ZONE)).replace(tzinfo=None) == local_now

    with cluster_log() as log:
        cluster = workers.start_cluster(log, WHATSAPP_GRAPH_URL=fake_graph.base_url, Q_WORKERS="2")
        try:
            wait_for(
                lambda: len(fake_graph.sent_messages()) >= 1,
                timeout=DEADLINE + 30,
                what="the daily message at the fake Graph API",
                interval=0.2,
            )
            arrived = timezone.now()
            wait_for(
                lambda: ScheduledMessage.objects.filter(previous=first).exists(),
                timeout=30,
                what="the next occurrence",
            )
            time.sleep(3)  # stray duplicates (the safety net, a repeated task) get their chance
        finally:
            kill_cluster(cluster)

    assert arrived - first.scheduled_time <= timedelta(seconds=DEADLINE)
    assert Counter(body["to"] for body in fake_graph.sent_messages()) == {"919800000003": 1}
    first.refresh_from_db()
    assert first.status == "sent"
    following = ScheduledMessage.objects.get(previous=first)
    assert following.status == "pending"
    assert following.recurrence == "daily"
    assert following.recipients == first.recipients
    # One day later at the same wall-clock time in the account's zone (no DST in Kolkata:
    # also exactly 24 hours).
    first_local = timezone.localtime(first.scheduled_time, ZoneInfo(ZONE))
    next_local = timezone.localtime(following.scheduled_time, ZoneInfo(ZONE))
    assert next_local.date() == first_local.date() + timedelta(days=1)
    assert next_local.time() == first_local.time()
    assert following.scheduled_time - first.scheduled_time == timedelta(days=1)
    assert ScheduledMessage.objects.filter(previous=following).count() == 0
    assert Message.objects.filter(scheduled_message=first).count() == 1
    assert not Message.objects.filter(scheduled_message=following).exists()
    pending = owner_client.get(f"{URL}/pending").json()  # a bare array, as HeyDoc's
    assert [item["id"] for item in pending] == [following.pk]


ON_TIME = 5  # seconds: the 1-second scheduler tick, the dispatch and the send


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_with_the_cluster_running_a_message_arrives_within_seconds_of_its_time_and_sigterm_stops_it(
    owner_client, account, whatsapp_connection, fake_graph, purged_broker
):
    LeadFactory(account=account, phone="+919800000004", last_inbound_at=timezone.now() - timedelta(hours=1))

    with cluster_log() as log:
        cluster = workers.start_cluster(log, WHATSAPP_GRAPH_URL=fake_graph.base_url)
        try:
            wait_for(lambda: "running" in Path(log.name).read_text(), timeout=60, what="the cluster to start")
            # Its time is a whole second 3 to 4 s ahead: django-q2's own 30-second tick
            # would miss it by up to 30 s.
            when = (timezone.now() + timedelta(seconds=4)).replace(microsecond=0)
            created = owner_client.post(
                URL,
                {"message": "Your table is ready", "recipients": ["919800000004"], "scheduled_time": when.isoformat()},
                format="json",
            )
            assert created.status_code == 201, created.content
            wait_for(
                lambda: len(fake_graph.sent_messages()) >= 1,
                timeout=ON_TIME + 30,
                what="the scheduled message at the fake Graph API",
                interval=0.1,
            )
            arrived = timezone.now()
            # SIGTERM, as a deployment's restart sends: the cluster and its scheduler thread stop.
            cluster.send_signal(signal.SIGTERM)
            assert cluster.wait(timeout=30) == 0
        finally:
            kill_cluster(cluster)

    assert when <= arrived <= when + timedelta(seconds=ON_TIME), (arrived - when).total_seconds()
    assert [body["text"]["body"] for body in fake_graph.sent_messages()] == ["Your table is ready"]
