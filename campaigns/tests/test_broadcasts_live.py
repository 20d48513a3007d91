"""Broadcasts delivered by real ``manage.py qcluster`` processes against the fake Graph
API server (issue 5, item 5):

- 2,000 leads, the cluster killed (SIGKILL) mid-send and restarted: every lead gets
  exactly one request (by phone and by message id), the broadcast ends completed, and
  the requests keep to the number's throughput cap per wall-clock second, and any
  sliding 1-second window to the cap plus a small burst (see the test);
- two clusters working the same broadcast at once (every batch queued more than once):
  still exactly one request per lead, none lost;
- leads opting out (a signed STOP webhook) while the batch holding their messages is
  already sending: none of them gets a request, and the broadcast counts them."""

import hashlib
import hmac
import json
import math
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone
from django_q.tasks import async_task

from campaigns.models import Broadcast
from campaigns.selectors.broadcasts import broadcast_totals
from campaigns.services.broadcasts import SEND_BATCH_TASK, broadcasts_start_due
from leads.models import Lead
from messaging.models import Message, WhatsAppConnection
from messaging.services import DELIVERY_BATCH_SIZE
from messaging.tasks import requeue_stale_messages
from messaging.throughput import WINDOWS_PER_SECOND
from tests import workers
from tests.workers import cluster_log, echo_sent_statuses, kill_cluster, wait_for

CLAIM_TIMEOUT = 21  # > Q_TIMEOUT (system check heroshhi.E004)
Q_TIMEOUT = 20  # a batch of 100 at the caps used here takes a few seconds
Q_RETRY = 25
WORKERS = 2
CONCURRENCY = 8  # requests in flight per worker (WHATSAPP_SEND_CONCURRENCY)


def start_cluster(fake_graph, log, **env):
    settings = {
        "WHATSAPP_GRAPH_URL": fake_graph.base_url,
        "MESSAGE_CLAIM_TIMEOUT": str(CLAIM_TIMEOUT),
        "Q_TIMEOUT": str(Q_TIMEOUT),
        "Q_RETRY": str(Q_RETRY),
        "Q_WORKERS": str(WORKERS),
        "WHATSAPP_SEND_CONCURRENCY": str(CONCURRENCY),
    }
    return workers.start_cluster(log, **{**settings, **env})


@contextmanager
def cluster_logs(count: int = 1):
    """Log files for ``count`` clusters; their tails go to stderr when the test fails."""
    with ExitStack() as stack:
        yield [stack.enter_context(cluster_log()) for _ in range(count)]


def bulk_leads(account, count: int) -> list[Lead]:
    """``count`` leads with valid, distinct Indian mobile numbers, who wrote an hour ago
    (the 24-hour window is open: texts may go), in one set-based insert."""
    recent = timezone.now() - timedelta(hours=1)
    leads = [
        Lead(account=account, name=f"Lead {i}", phone=f"+9198{i:08d}", last_inbound_at=recent) for i in range(count)
    ]
    Lead.objects.bulk_create(leads, batch_size=500)
    return leads


def record_arrivals(fake_graph, monkeypatch) -> list[float]:
    """Arrival times (wall clock, at the fake server) of every message send. The fake
    server runs in this process and answers through this instance's ``_answer``."""
    arrivals: list[float] = []
    answer = fake_graph._answer

    def timed_answer(method, path, query, headers, body):
        if method == "POST" and path.endswith("/messages"):
            arrivals.append(time.time())
        return answer(method, path, query, headers, body)

    monkeypatch.setattr(fake_graph, "_answer", timed_answer)
    return arrivals


def create_broadcast(owner_client, leads: list[Lead]) -> tuple[str, set[str]]:
    response = owner_client.post(
        "/api/broadcasts",
        {"name": "Live", "message": "Hi {{first_name}}", "leadIds": [str(lead.pk) for lead in leads]},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["data"]["recipients"] == len(leads)
    broadcast_id = response.json()["data"]["id"]
    message_ids = {str(pk) for pk in Message.objects.filter(broadcast_id=broadcast_id).values_list("pk", flat=True)}
    return broadcast_id, message_ids


def wait_completed(broadcast_id: str, *, timeout: float) -> None:
    """Until the broadcast completes, doing every second what the sweeper and the
    dispatcher do every minute."""

    def completed() -> bool:
        if Broadcast.objects.filter(pk=broadcast_id, status=Broadcast.Status.COMPLETED).exists():
            return True
        requeue_stale_messages()
        broadcasts_start_due()
        time.sleep(1)
        return False

    wait_for(completed, timeout=timeout, what="the broadcast to complete")
    time.sleep(1.5)  # duplicate tasks still in flight get their chance to misbehave


def assert_exactly_once(fake_graph, message_ids: set[str], leads: list[Lead]) -> None:
    per_message = Counter(body["biz_opaque_callback_data"] for body in fake_graph.sent_messages())
    assert [m for m, n in per_message.items() if n > 1] == [], "a message was sent twice"
    assert set(per_message) == message_ids, "a message was lost (or an unknown one was sent)"
    per_phone = Counter(body["to"] for body in fake_graph.sent_messages())
    assert per_phone == Counter(lead.phone.lstrip("+") for lead in leads), "a lead got no message, or two"


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


# --- 2,000 leads, the cluster killed mid-send ---------------------------------------------

CRASH_LEADS = 2_000
CRASH_CAP = 100  # messages a second: ~20 s of sending in all


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_broadcast_of_2000_survives_a_killed_cluster_and_keeps_to_the_cap(
    account, owner_client, whatsapp_connection, fake_graph, settings, purged_broker, monkeypatch
):
    settings.MESSAGE_CLAIM_TIMEOUT = CLAIM_TIMEOUT  # for the sweeper and dispatcher, run here
    WhatsAppConnection.objects.filter(pk=whatsapp_connection.pk).update(throughput_cap=CRASH_CAP)
    arrivals = record_arrivals(fake_graph, monkeypatch)
    leads = bulk_leads(account, CRASH_LEADS)
    broadcast_id, message_ids = create_broadcast(owner_client, leads)
    assert len(message_ids) == CRASH_LEADS

    with cluster_logs() as (log,), ExitStack() as clusters:
        first = start_cluster(fake_graph, log)
        clusters.callback(kill_cluster, first)
        wait_for(lambda: len(fake_graph.sent_messages()) >= CRASH_LEADS // 4, timeout=120, what="the first sends")
        kill_cluster(first)
        killed_at = time.monotonic()
        time.sleep(0.5)  # requests already on the wire land at the fake server
        reached = len(fake_graph.sent_messages())
        assert 0 < reached < CRASH_LEADS, "the cluster was not killed mid-way"
        echo_sent_statuses(fake_graph)

        second = start_cluster(fake_graph, log)
        clusters.callback(kill_cluster, second)
        # The dead worker's claims are stale after CLAIM_TIMEOUT: no sooner may the
        # sweeper hand their messages to the new cluster.
        time.sleep(max(0.0, killed_at + CLAIM_TIMEOUT + 0.5 - time.monotonic()))
        wait_completed(broadcast_id, timeout=240)

    assert_exactly_once(fake_graph, message_ids, leads)
    detail = owner_client.get(f"/api/broadcasts/{broadcast_id}").json()["data"]
    assert detail["status"] == "completed"
    assert detail["finishedAt"] is not None
    assert detail["totals"] == {"queued": 0, "sent": CRASH_LEADS, "delivered": 0, "read": 0, "failed": 0}

    # The cap counts wall-clock seconds, shared by every worker process
    # (messaging.throughput): a second's slots never exceed the cap (exactly, in
    # messaging/tests/test_throughput.py). Arrival at the server lags the slot by the
    # request's own latency, which may carry the last window's requests of a second
    # into the next (seen under a loaded CI: 106 at a cap of 100): one share at most.
    share = math.ceil(CRASH_CAP / WINDOWS_PER_SECOND)
    per_second, sliding = busiest_seconds(arrivals)
    assert len(arrivals) == CRASH_LEADS
    assert per_second <= CRASH_CAP + share, f"{per_second} sends in one second, over the cap of {CRASH_CAP} + {share}"
    # The cap is spread over tenth-of-a-second windows, so a sliding 1-second interval
    # overlaps at most eleven of them: the cap plus one window's share, and the lag's one more.
    burst = 2 * share
    assert sliding <= CRASH_CAP + burst, f"{sliding} sends within 1 s, over the cap of {CRASH_CAP} + {burst}"
    print(f"busiest wall-clock second: {per_second}; busiest sliding 1-second window: {sliding} (cap {CRASH_CAP})")


# --- Two clusters at once -----------------------------------------------------------------

TWO_LEADS = 1_000
TWO_CAP = 100


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_two_clusters_on_one_broadcast_send_each_lead_exactly_once(
    account, owner_client, whatsapp_connection, fake_graph, settings, purged_broker, monkeypatch
):
    settings.MESSAGE_CLAIM_TIMEOUT = CLAIM_TIMEOUT
    WhatsAppConnection.objects.filter(pk=whatsapp_connection.pk).update(throughput_cap=TWO_CAP)
    arrivals = record_arrivals(fake_graph, monkeypatch)
    leads = bulk_leads(account, TWO_LEADS)
    broadcast_id, message_ids = create_broadcast(owner_client, leads)
    # django-q2 delivers at least once: every batch is queued twice more (in reverse,
    # then in order), so both clusters work the same messages at the same time.
    ordered = list(Message.objects.filter(broadcast_id=broadcast_id).order_by("lead_id").values_list("pk", flat=True))
    size = DELIVERY_BATCH_SIZE
    batches = [[str(pk) for pk in ordered[i : i + size]] for i in range(0, len(ordered), size)]
    for batch in [*reversed(batches), *batches]:
        async_task(SEND_BATCH_TASK, broadcast_id, batch)

    with cluster_logs(2) as logs, ExitStack() as clusters:
        for log in logs:
            clusters.callback(kill_cluster, start_cluster(fake_graph, log))
        wait_completed(broadcast_id, timeout=180)
        ran = [Path(log.name).read_text().count(SEND_BATCH_TASK.rsplit(".", 1)[-1]) for log in logs]

    assert all(ran), f"a cluster ran no batch: {ran}"
    assert_exactly_once(fake_graph, message_ids, leads)
    detail = owner_client.get(f"/api/broadcasts/{broadcast_id}").json()["data"]
    assert detail["status"] == "completed"
    assert detail["totals"] == {"queued": 0, "sent": TWO_LEADS, "delivered": 0, "read": 0, "failed": 0}
    per_second, sliding = busiest_seconds(arrivals)
    share = math.ceil(TWO_CAP / WINDOWS_PER_SECOND)  # the arrival lag, as in the crash test
    assert per_second <= TWO_CAP + share, f"{per_second} sends in one second, over the cap of {TWO_CAP} + {share}"
    print(f"batches run per cluster: {ran}; busiest second: {per_second}; sliding window: {sliding}")


# --- Opt-out mid-broadcast ----------------------------------------------------------------

OPT_LEADS = DELIVERY_BATCH_SIZE  # one batch: the opted-out leads' messages are claimed by it
OPT_CAP = 10  # ~10 s for the batch
OPT_OUT = 20  # the last leads of the batch
OPT_CLAIM_TIMEOUT = 41  # the batch runs within half of min(Q_TIMEOUT, claim timeout)
APP_SECRET = "test-app-secret"  # the whatsapp_connection fixture's


def signed_stops(leads: list[Lead]) -> tuple[bytes, str]:
    """One Meta webhook delivery: each lead replies STOP; signed as Meta signs it."""
    now = int(time.time())
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "2002",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": "15550101001", "phone_number_id": "1001"},
                            "contacts": [
                                {"profile": {"name": lead.name}, "wa_id": lead.phone.lstrip("+")} for lead in leads
                            ],
                            "messages": [
                                {
                                    "from": lead.phone.lstrip("+"),
                                    "id": f"wamid.STOP{lead.pk.hex}",
                                    "timestamp": str(now),
                                    "type": "text",
                                    "text": {"body": "STOP"},
                                }
                                for lead in leads
                            ],
                        },
                    }
                ],
            }
        ],
    }
    body = json.dumps(payload).encode()
    return body, "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_leads_opting_out_mid_broadcast_get_nothing_more(
    account, owner_client, whatsapp_connection, fake_graph, settings, purged_broker, monkeypatch
):
    settings.MESSAGE_CLAIM_TIMEOUT = OPT_CLAIM_TIMEOUT
    WhatsAppConnection.objects.filter(pk=whatsapp_connection.pk).update(throughput_cap=OPT_CAP)
    arrivals = record_arrivals(fake_graph, monkeypatch)
    leads = sorted(bulk_leads(account, OPT_LEADS), key=lambda lead: lead.pk)  # the sending order
    broadcast_id, _ = create_broadcast(owner_client, leads)
    stopping = leads[-OPT_OUT:]
    stopping_phones = {lead.phone.lstrip("+") for lead in stopping}

    with cluster_logs() as (log,), ExitStack() as clusters:
        cluster = start_cluster(
            fake_graph,
            log,
            MESSAGE_CLAIM_TIMEOUT=str(OPT_CLAIM_TIMEOUT),
            Q_TIMEOUT=str(OPT_CLAIM_TIMEOUT - 1),
            Q_RETRY=str(OPT_CLAIM_TIMEOUT + 4),
        )
        clusters.callback(kill_cluster, cluster)
        wait_for(lambda: len(fake_graph.sent_messages()) >= 2 * OPT_CAP, timeout=120, what="the first sends")
        # Their messages are held by the batch that is sending right now, not yet sent.
        held = Message.objects.filter(lead__in=stopping, claimed_at__isnull=False, status=Message.Status.QUEUED)
        assert held.count() == OPT_OUT, "the opted-out leads' messages are not waiting in the running batch"

        body, signature = signed_stops(stopping)
        response = Client().post(
            "/api/webhooks/whatsapp", body, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=signature
        )
        committed_at = time.time()
        assert response.status_code == 200
        assert Lead.objects.filter(pk__in=[lead.pk for lead in stopping], is_opted_out=True).count() == OPT_OUT
        sent_before = [i for i, body in enumerate(fake_graph.sent_messages()) if body["to"] in stopping_phones]
        assert sent_before == [], "an opted-out lead's message went out before the opt-out (test too slow)"
        wait_completed(broadcast_id, timeout=120)

    reached = Counter(body["to"] for body in fake_graph.sent_messages())
    assert stopping_phones.isdisjoint(reached), "a lead who opted out got a message after the opt-out committed"
    assert reached == Counter(lead.phone.lstrip("+") for lead in leads[:-OPT_OUT]), "a lead got no message, or two"
    assert max(arrivals) > committed_at, "the broadcast was not sending any more when the leads opted out"
    detail = owner_client.get(f"/api/broadcasts/{broadcast_id}").json()["data"]
    assert detail["status"] == "completed"
    assert detail["totals"] == {"queued": 0, "sent": OPT_LEADS - OPT_OUT, "delivered": 0, "read": 0, "failed": 0}
    assert detail["skippedOptedOut"] == OPT_OUT  # none at the snapshot: all at send time
    pk = Broadcast.objects.get(pk=broadcast_id).pk
    assert broadcast_totals(broadcast_ids=[pk])[pk]["opted_out_at_send"] == OPT_OUT
    failed = Message.objects.filter(broadcast_id=broadcast_id, lead__in=stopping).values_list("status", "error_code")
    assert set(failed) == {(Message.Status.FAILED, "OPT_OUT")}
