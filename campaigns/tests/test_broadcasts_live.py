"""A broadcast delivered by real ``manage.py qcluster`` processes against the fake Graph
API server, with the cluster killed (SIGKILL) mid-way and restarted: every lead gets
exactly one message, the broadcast ends completed, and no wall-clock second at the fake
server sees more sends than the number's throughput cap."""

import os
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from campaigns.models import Broadcast
from campaigns.services.broadcasts import broadcasts_start_due
from leads.tests.factories import LeadFactory
from messaging import services as messaging_services
from messaging.models import Message, WhatsAppConnection
from messaging.tasks import requeue_stale_messages
from tests import workers
from tests.workers import kill_cluster, wait_for

LEADS = 60
CAP = 10  # messages a second: small, so the cap shapes the run
CLAIM_TIMEOUT = 21  # > Q_TIMEOUT (system check heroshhi.E004)
Q_TIMEOUT = 20  # a batch of LEADS at CAP a second takes ~6 s
Q_RETRY = 25


def start_cluster(fake_graph, log):
    return workers.start_cluster(
        log,
        WHATSAPP_GRAPH_URL=fake_graph.base_url,
        MESSAGE_CLAIM_TIMEOUT=str(CLAIM_TIMEOUT),
        Q_TIMEOUT=str(Q_TIMEOUT),
        Q_RETRY=str(Q_RETRY),
        Q_WORKERS="2",
    )


def busiest_seconds(arrivals: list[float]) -> tuple[int, int]:
    """The most sends in one wall-clock second, and in any sliding 1-second window."""
    per_second = Counter(int(t) for t in arrivals)
    ordered = sorted(arrivals)
    sliding, start = 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= 1.0:
            start += 1
        sliding = max(sliding, end - start + 1)
    return max(per_second.values(), default=0), sliding


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_broadcast_survives_a_killed_cluster_and_keeps_to_the_cap(
    account, owner_client, whatsapp_connection, fake_graph, settings, purged_broker, monkeypatch
):
    settings.MESSAGE_CLAIM_TIMEOUT = CLAIM_TIMEOUT  # for the sweeper and dispatcher, run here
    WhatsAppConnection.objects.filter(pk=whatsapp_connection.pk).update(throughput_cap=CAP)
    # tests/fake_graph.py records no arrival times: note them here (its server runs in
    # this process and answers through this instance's _answer).
    arrivals: list[float] = []
    answer = fake_graph._answer

    def timed_answer(method, path, query, headers, body):
        if method == "POST" and path.endswith("/messages"):
            arrivals.append(time.time())
        return answer(method, path, query, headers, body)

    monkeypatch.setattr(fake_graph, "_answer", timed_answer)
    leads = [LeadFactory(account=account, last_inbound_at=timezone.now() - timedelta(hours=1)) for _ in range(LEADS)]

    response = owner_client.post(
        "/api/broadcasts",
        {"name": "Live", "message": "Hi {{first_name}}", "leadIds": [str(lead.pk) for lead in leads]},
        format="json",
    )
    assert response.status_code == 201, response.json()
    broadcast_id = response.json()["data"]["id"]
    assert response.json()["data"]["recipients"] == LEADS
    message_ids = {str(pk) for pk in Message.objects.filter(broadcast_id=broadcast_id).values_list("pk", flat=True)}

    log = tempfile.NamedTemporaryFile(prefix="qcluster-", suffix=".log", delete=False)  # noqa: SIM115
    first = start_cluster(fake_graph, log)
    try:
        wait_for(lambda: len(fake_graph.sent_messages()) >= LEADS // 3, timeout=120, what="the first sends")
        kill_cluster(first)
        killed_at = time.monotonic()
        time.sleep(0.5)  # requests already on the wire land at the fake server
        reached = Counter(body["biz_opaque_callback_data"] for body in fake_graph.sent_messages())
        assert 0 < sum(reached.values()) < LEADS, "the cluster was not killed mid-way"

        # Meta answers every accepted message with a status webhook echoing our id: it
        # links the sends whose answer died with the worker.
        for message_id in Message.objects.filter(pk__in=list(reached), wamid__isnull=True).values_list("pk", flat=True):
            messaging_services.message_status_apply(
                wamid=f"wamid.ECHO{message_id.hex[:12]}",
                status=Message.Status.SENT,
                at=timezone.now(),
                reference=str(message_id),
            )

        second = start_cluster(fake_graph, log)
        try:
            # The sweeper and the dispatcher run every minute; here every second once the
            # dead worker's claims are stale.
            time.sleep(max(0.0, killed_at + CLAIM_TIMEOUT + 0.5 - time.monotonic()))

            def completed() -> bool:
                if Broadcast.objects.filter(pk=broadcast_id, status=Broadcast.Status.COMPLETED).exists():
                    return True
                requeue_stale_messages()
                broadcasts_start_due()
                time.sleep(1)
                return False

            wait_for(completed, timeout=180, what="the broadcast to complete")
            time.sleep(1.5)  # duplicate tasks still in flight get their chance to misbehave
        finally:
            kill_cluster(second)
    except BaseException:
        sys.stderr.write(Path(log.name).read_text()[-5000:])
        raise
    finally:
        kill_cluster(first)
        log.close()
        os.unlink(log.name)

    per_message = Counter(body["biz_opaque_callback_data"] for body in fake_graph.sent_messages())
    assert set(per_message) == message_ids, "a message was lost (or an unknown one was sent)"
    assert [m for m, n in per_message.items() if n > 1] == [], "a message was sent twice"
    per_phone = Counter(body["to"] for body in fake_graph.sent_messages())
    assert per_phone == Counter(lead.phone.lstrip("+") for lead in leads), "a lead got no message, or two"

    detail = owner_client.get(f"/api/broadcasts/{broadcast_id}").json()["data"]
    assert detail["status"] == "completed"
    assert detail["finishedAt"] is not None
    assert detail["totals"] == {"queued": 0, "sent": LEADS, "delivered": 0, "read": 0, "failed": 0}

    # The cap counts wall-clock seconds, shared by every worker process (messaging.throughput).
    per_second, sliding = busiest_seconds(arrivals)
    assert len(arrivals) == LEADS
    assert per_second <= CAP, f"{per_second} sends in one second, over the cap of {CAP}"
    print(f"busiest wall-clock second: {per_second}; busiest sliding 1-second window: {sliding} (cap {CAP})")
