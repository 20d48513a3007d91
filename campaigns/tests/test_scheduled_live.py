"""Scheduled messages with a real django-q2 cluster (``manage.py qcluster``) against
the fake Graph API server: a message scheduled a few seconds ahead reaches WhatsApp
within 60 seconds of its time, exactly once; one cancelled before its time never does."""

import os
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from django_q.models import Schedule

from campaigns.models import ScheduledMessage
from leads.tests.factories import LeadFactory
from messaging.models import Message
from tests import workers
from tests.workers import kill_cluster, wait_for

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

    log = tempfile.NamedTemporaryFile(prefix="qcluster-", suffix=".log", delete=False)  # noqa: SIM115
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
        # The cancelled one's one-off schedule fires too (django-q2 deletes it once run).
        wait_for(
            lambda: not Schedule.objects.filter(func="campaigns.tasks.scheduled.send_due").exists(),
            timeout=60,
            what="both one-off schedules to have fired",
        )
        # The every-minute safety net gets its turn as well, then time for stray duplicates.
        wait_for(
            lambda: Schedule.objects.filter(func="campaigns.tasks.dispatch_due", next_run__gt=arrived).exists(),
            timeout=90,
            what="the every-minute dispatcher to have run",
        )
        time.sleep(3)
    except BaseException:
        sys.stderr.write(Path(log.name).read_text()[-5000:])
        raise
    finally:
        kill_cluster(cluster)
        log.close()
        os.unlink(log.name)

    assert arrived - due_at <= timedelta(seconds=DEADLINE)
    assert Counter(body["to"] for body in fake_graph.sent_messages()) == {"919800000001": 1}
    assert [body["text"]["body"] for body in fake_graph.sent_messages()] == ["See you at 5"]
    assert ScheduledMessage.objects.get(pk=kept_id).status == "sent"
    assert ScheduledMessage.objects.get(pk=dropped_id).status == "cancelled"
    assert Message.objects.get(scheduled_message_id=kept_id).status == "sent"
    assert not Message.objects.filter(lead__phone="+919800000002").exists()
