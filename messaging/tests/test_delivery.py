"""Outbound delivery guarantees: at least once to the worker, at most once to Meta.

django-q2 may run a delivery task twice, run it late, or lose it with a dead worker;
the send is guarded by a claim on the message row (messaging.services._claim). These
tests run the real delivery service and the real Cloud API client against the fake
Graph API server on 127.0.0.1 and count what it received, per message id (the
``biz_opaque_callback_data`` every send carries). The last one runs real
``manage.py qcluster`` processes and kills one with SIGKILL mid-way."""

import ast
import inspect
import itertools
import subprocess
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from typing import IO

import pytest
from django.db import connection
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Schedule
from django_q.scheduler import scheduler
from django_q.tasks import async_task

from accounts.models import Account
from heroshhi.checks import check_message_claim_timeout
from leads.models import Lead
from messaging import services, tasks
from messaging.models import Message, WhatsAppConnection
from messaging.providers import CloudApiProvider
from tests import workers
from tests.fake_graph import FakeGraphServer
from tests.workers import cluster_log, echo_sent_statuses, kill_cluster, wait_all_sent, wait_for

_numbers = itertools.count(1)


def make_lead(account: Account, **fields) -> Lead:
    n = next(_numbers)
    return Lead.objects.create(
        account=account,
        name=f"Lead {n}",
        phone=f"+9198{n:08d}",
        last_inbound_at=timezone.now() - timedelta(hours=1),  # the 24-hour window is open
        **fields,
    )


def queue_message(account: Account, text: str = "Hello") -> Message:
    """A text message through the one sending service, left for the worker."""
    return services.message_send(account=account, lead=make_lead(account), text=text, deliver_now=False)


def sends_per_message(fake_graph: FakeGraphServer) -> Counter:
    """Requests that reached the fake Graph API, per message id."""
    return Counter(body["biz_opaque_callback_data"] for body in fake_graph.sent_messages())


# --- One claim ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_message_send_one_request(account, whatsapp_connection, fake_graph, purged_broker):
    """Several workers handed the same message at the same instant: one request each."""
    fake_graph.state.latency = 0.05  # the first caller is still talking to Meta when the others arrive
    messages = [queue_message(account) for _ in range(6)]
    outcomes: list[str] = []

    def deliver(message_id: uuid.UUID, barrier: threading.Barrier) -> None:
        try:
            barrier.wait()
            outcomes.append(services.message_deliver(message_id=message_id).status)
        finally:
            connection.close()

    for message in messages:
        barrier = threading.Barrier(4)
        threads = [threading.Thread(target=deliver, args=(message.pk, barrier)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    assert sends_per_message(fake_graph) == {str(m.pk): 1 for m in messages}
    assert len(outcomes) == 4 * len(messages)
    for message in messages:
        message.refresh_from_db()
        assert message.status == Message.Status.SENT
        assert message.wamid.startswith("wamid.FAKE")
        assert message.attempts == 1  # one claim taken; the others found it taken


def test_a_duplicate_task_for_a_sent_message_sends_nothing(account, whatsapp_connection, fake_graph):
    message = queue_message(account)

    assert tasks.deliver_message(str(message.pk)) == Message.Status.SENT
    # django-q2 runs the task again (broker re-queue, `retry` elapsed, a second cluster).
    assert tasks.deliver_message(str(message.pk)) == Message.Status.SENT

    assert sends_per_message(fake_graph) == {str(message.pk): 1}
    message.refresh_from_db()
    assert message.attempts == 1


def test_a_task_for_a_deleted_message_does_nothing(account, whatsapp_connection, fake_graph):
    message = queue_message(account)
    message.lead.delete()

    assert tasks.deliver_message(str(message.pk)) == "missing"
    assert fake_graph.sent_messages() == []


# --- Failures -----------------------------------------------------------------------------------


def test_a_retryable_failure_releases_the_claim_and_a_later_run_sends_once(
    account, whatsapp_connection, fake_graph, monkeypatch
):
    provider_attempts = inspect.signature(CloudApiProvider).parameters["max_attempts"].default
    message = queue_message(account)
    # Meta's throughput error on every one of the provider's own attempts.
    fake_graph.fail_next(code=130429, status=400, times=provider_attempts)

    assert tasks.deliver_message(str(message.pk)) == "retry"

    assert sends_per_message(fake_graph) == {str(message.pk): provider_attempts}
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.claimed_at is None  # released: nothing was accepted
    assert message.wamid is None
    [retry] = Schedule.objects.filter(func="messaging.tasks.deliver_message")
    assert ast.literal_eval(retry.args) == (str(message.pk),)
    assert retry.schedule_type == Schedule.ONCE
    assert retry.next_run > timezone.now()  # with backoff

    # When the retry comes due, django-q2's scheduler runs it (inline here).
    Schedule.objects.filter(pk=retry.pk).update(next_run=timezone.now() - timedelta(seconds=1))
    monkeypatch.setattr(Conf, "SYNC", True)
    scheduler()

    assert sends_per_message(fake_graph) == {str(message.pk): provider_attempts + 1}
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.attempts == 2
    # A late duplicate of the retry sends nothing more.
    assert tasks.deliver_message(str(message.pk)) == Message.Status.SENT
    assert sends_per_message(fake_graph) == {str(message.pk): provider_attempts + 1}


def test_a_read_timeout_after_sending_is_not_retried_and_the_message_fails(
    account, whatsapp_connection, fake_graph, settings
):
    """Meta may have accepted a request that timed out while waiting for the answer:
    sending it again could deliver it twice. It fails with TIMEOUT, sent once."""
    settings.WHATSAPP_READ_TIMEOUT = 0.3
    message = queue_message(account)
    fake_graph.fail_next(code=None, status=200, delay=1.0, body="{}")

    assert tasks.deliver_message(str(message.pk)) == Message.Status.FAILED

    message.refresh_from_db()
    assert message.error_code == "TIMEOUT"
    assert message.wamid is None
    assert not Schedule.objects.filter(func="messaging.tasks.deliver_message").exists()  # no retry
    assert tasks.deliver_message(str(message.pk)) == Message.Status.FAILED
    assert sends_per_message(fake_graph) == {str(message.pk): 1}


def test_meta_190_marks_the_connection_token_invalid(account, whatsapp_connection, fake_graph):
    message = queue_message(account)
    fake_graph.fail_next(code=190, status=401)

    assert tasks.deliver_message(str(message.pk)) == Message.Status.FAILED

    message.refresh_from_db()
    assert message.error_code == "190"
    whatsapp_connection.refresh_from_db()
    assert whatsapp_connection.status == WhatsAppConnection.Status.TOKEN_INVALID
    assert whatsapp_connection.status_detail
    assert not Schedule.objects.filter(func="messaging.tasks.deliver_message").exists()
    assert sends_per_message(fake_graph) == {str(message.pk): 1}


def test_opt_out_between_queueing_and_delivery_sends_nothing(account, whatsapp_connection, fake_graph):
    message = queue_message(account)
    Lead.objects.filter(pk=message.lead_id).update(is_opted_out=True, opted_out_at=timezone.now())

    assert tasks.deliver_message(str(message.pk)) == Message.Status.FAILED

    message.refresh_from_db()
    assert message.error_code == "OPT_OUT"
    assert fake_graph.sent_messages() == []
    # Opting back in later does not resurrect it.
    Lead.objects.filter(pk=message.lead_id).update(is_opted_out=False)
    assert tasks.deliver_message(str(message.pk)) == Message.Status.FAILED
    assert fake_graph.sent_messages() == []


# --- A worker that died -------------------------------------------------------------------------


def test_a_stale_claim_without_a_wamid_is_claimed_again(account, whatsapp_connection, fake_graph, settings):
    """A worker claimed the message and died before calling Meta."""
    message = queue_message(account)
    claimed = timezone.now() - timedelta(seconds=settings.MESSAGE_CLAIM_TIMEOUT - 5)
    Message.objects.filter(pk=message.pk).update(claimed_at=claimed, attempts=1)

    # Still within the dead worker's claim: nobody else may send it yet.
    assert tasks.deliver_message(str(message.pk)) == Message.Status.QUEUED
    assert fake_graph.sent_messages() == []

    Message.objects.filter(pk=message.pk).update(
        claimed_at=timezone.now() - timedelta(seconds=settings.MESSAGE_CLAIM_TIMEOUT + 1)
    )
    assert tasks.deliver_message(str(message.pk)) == Message.Status.SENT
    assert sends_per_message(fake_graph) == {str(message.pk): 1}
    message.refresh_from_db()
    assert message.attempts == 2


def test_a_lost_answer_is_linked_by_metas_status_echo_and_not_sent_again(account, whatsapp_connection, fake_graph):
    """A worker died after Meta accepted the message, before saving the wamid. Meta's
    status webhook echoes our message id (biz_opaque_callback_data) with the wamid."""
    message = queue_message(account)
    Message.objects.filter(pk=message.pk).update(claimed_at=timezone.now() - timedelta(hours=1), attempts=1)

    services.message_status_apply(
        wamid="wamid.ECHOED1", status=Message.Status.SENT, at=timezone.now(), reference=str(message.pk)
    )

    message.refresh_from_db()
    assert message.wamid == "wamid.ECHOED1"
    assert message.status == Message.Status.SENT
    # Its claim is long stale, yet it is not claimable: it has a wamid and is sent.
    assert tasks.deliver_message(str(message.pk)) == Message.Status.SENT
    assert services.messages_requeue_stale() == 0
    assert fake_graph.sent_messages() == []


@pytest.mark.django_db(transaction=True)
def test_an_echo_that_beats_the_answer_is_not_moved_backwards(account, whatsapp_connection, fake_graph, purged_broker):
    """Meta's `delivered` webhook can arrive before the send's own answer is saved."""
    message = queue_message(account)
    original = FakeGraphServer._send

    def send_and_echo(self, phone_number_id, body):
        status, answer = original(self, phone_number_id, body)
        # Meta's webhooks race the answer back: the status echo lands first. (The fake
        # server answers in a thread of this process, so it can reach the test database.)
        try:
            services.message_status_apply(
                wamid=answer["messages"][0]["id"],
                status=Message.Status.DELIVERED,
                at=timezone.now(),
                reference=body["biz_opaque_callback_data"],
            )
        finally:
            connection.close()
        return status, answer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FakeGraphServer, "_send", send_and_echo)
        delivered = services.message_deliver(message_id=message.pk)

    assert delivered.status == Message.Status.DELIVERED
    assert delivered.wamid.startswith("wamid.FAKE")
    assert delivered.sent_at is not None and delivered.delivered_at is not None


def test_the_sweeper_requeues_abandoned_messages_only(
    account, whatsapp_connection, fake_graph, settings, django_capture_on_commit_callbacks, purged_broker
):
    timeout = timedelta(seconds=settings.MESSAGE_CLAIM_TIMEOUT)
    long_ago = timezone.now() - timeout - timedelta(seconds=1)
    abandoned_claim = queue_message(account)  # its worker died
    Message.objects.filter(pk=abandoned_claim.pk).update(claimed_at=long_ago, created_at=long_ago)
    never_claimed = queue_message(account)  # its task was lost
    Message.objects.filter(pk=never_claimed.pk).update(created_at=long_ago)
    fresh_claim = queue_message(account)  # a live worker is sending it
    Message.objects.filter(pk=fresh_claim.pk).update(claimed_at=timezone.now(), created_at=long_ago)
    queue_message(account)  # just queued: its task is on its way
    sent = queue_message(account)
    tasks.deliver_message(str(sent.pk))
    Message.objects.filter(pk=sent.pk).update(created_at=long_ago)

    def sweep() -> list[str]:
        queued: list[str] = []

        def async_task(func, *args, **kwargs):
            assert func == "messaging.tasks.deliver_messages"  # in batches, not a task per message
            queued.extend(args[0])

        with pytest.MonkeyPatch.context() as patch, django_capture_on_commit_callbacks(execute=True):
            patch.setattr("django_q.tasks.async_task", async_task)
            count = tasks.requeue_stale_messages()
        assert count == len(queued)
        return sorted(queued)

    # Tasks are waiting in the queue: an unclaimed message is probably one of them.
    purged_broker.enqueue("a task of a long broadcast")
    assert sweep() == [str(abandoned_claim.pk)]
    # The queue is empty: an unclaimed message that old lost its task.
    purged_broker.purge_queue()
    assert sweep() == sorted([str(abandoned_claim.pk), str(never_claimed.pk)])


def test_queueing_makes_sure_the_sweeper_runs_every_minute(account, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(services, "_sweeper_seen_until", 0.0)  # a fresh process
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kw: None)

    with django_capture_on_commit_callbacks(execute=True):
        queue_message(account)
        queue_message(account)

    [sweeper] = Schedule.objects.filter(func=services.SWEEPER_FUNC)
    assert (sweeper.schedule_type, sweeper.minutes, sweeper.repeats) == (Schedule.MINUTES, 1, -1)

    # Someone deleted it: the next process to queue a message (or this one, an hour
    # later) schedules it again.
    sweeper.delete()
    monkeypatch.setattr(services, "_sweeper_seen_until", 0.0)
    with django_capture_on_commit_callbacks(execute=True):
        queue_message(account)
    assert Schedule.objects.filter(func=services.SWEEPER_FUNC).count() == 1


def test_the_claim_timeout_must_exceed_the_task_timeout(settings):
    """A live worker may hold a claim as long as django-q2 lets a task run: a shorter
    claim timeout would let a second worker send the same message."""
    settings.MESSAGE_CLAIM_TIMEOUT = settings.Q_CLUSTER["timeout"]
    assert [e.id for e in check_message_claim_timeout(None)] == ["heroshhi.E004"]
    settings.MESSAGE_CLAIM_TIMEOUT = settings.Q_CLUSTER["timeout"] + 1
    assert check_message_claim_timeout(None) == []


# --- Real worker processes ----------------------------------------------------------------------

MESSAGES = 30
CLAIM_TIMEOUT = 3


def start_cluster(fake_graph: FakeGraphServer, log: IO[bytes], **env: str) -> subprocess.Popen:
    return workers.start_cluster(
        log,
        WHATSAPP_GRAPH_URL=fake_graph.base_url,
        MESSAGE_CLAIM_TIMEOUT=str(CLAIM_TIMEOUT),
        Q_TIMEOUT=str(CLAIM_TIMEOUT - 1),
        Q_RETRY=str(CLAIM_TIMEOUT + 1),
        Q_WORKERS="2",
        **env,
    )


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_send_and_restarted_sends_each_message_exactly_once(
    account, whatsapp_connection, fake_graph, settings, purged_broker
):
    settings.MESSAGE_CLAIM_TIMEOUT = CLAIM_TIMEOUT  # for the sweeper, run here
    fake_graph.state.latency = 0.05  # ~20 sends a second per worker: time to kill it mid-way
    messages = [queue_message(account, text=f"Message {i}") for i in range(MESSAGES)]
    ids = {str(m.pk) for m in messages}
    with cluster_log() as log:
        first = start_cluster(fake_graph, log)
        try:
            wait_for(lambda: len(fake_graph.sent_messages()) >= MESSAGES // 3, timeout=90, what="the first sends")
            kill_cluster(first)
            killed_at = time.monotonic()
            time.sleep(0.5)  # requests already on the wire land at the fake server
            reached = sends_per_message(fake_graph)
            assert 0 < sum(reached.values()) < MESSAGES, "the worker was not killed mid-way"

            echo_sent_statuses(fake_graph)  # Meta's status webhooks link the lost answers

            second = start_cluster(fake_graph, log)
            try:
                # The sweeper runs every minute; here every second once the dead worker's
                # claims are stale.
                time.sleep(max(0.0, killed_at + CLAIM_TIMEOUT + 0.5 - time.monotonic()))

                wait_all_sent(ids, timeout=90)
                time.sleep(1.5)  # duplicate tasks still in flight get their chance to misbehave
            finally:
                kill_cluster(second)
        finally:
            kill_cluster(first)

    per_message = sends_per_message(fake_graph)
    assert set(per_message) == ids, "a message was lost (or an unknown one was sent)"
    assert [m for m, n in per_message.items() if n > 1] == [], "a message was sent twice"
    assert not Message.objects.filter(pk__in=ids, wamid__isnull=True).exists()


BATCHES = 8
BATCH_SIZE = 10


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_and_restarted_sends_each_message_exactly_once(
    account, whatsapp_connection, fake_graph, settings, purged_broker
):
    """Batch tasks (messaging.tasks.deliver_messages): one claim per batch, the sends of
    a batch in flight together on a worker's threads. SIGKILL lands while batches are
    half sent: their claims stay behind on rows sent and unsent alike."""
    settings.MESSAGE_CLAIM_TIMEOUT = CLAIM_TIMEOUT  # for the sweeper, run here
    fake_graph.state.latency = 0.05  # a batch of 10 on 3 threads takes ~0.2 s: time to kill one mid-way
    messages = [queue_message(account, text=f"Batch message {i}") for i in range(BATCHES * BATCH_SIZE)]
    ids = [str(m.pk) for m in messages]
    for start in range(0, len(ids), BATCH_SIZE):
        async_task("messaging.tasks.deliver_messages", ids[start : start + BATCH_SIZE])
    with cluster_log() as log:
        first = start_cluster(fake_graph, log, WHATSAPP_SEND_CONCURRENCY="3")
        try:
            mid_batch = Message.objects.filter(pk__in=ids, claim_token__isnull=False, wamid__isnull=True)
            wait_for(
                lambda: len(fake_graph.sent_messages()) >= len(ids) // 4 and mid_batch.exists(),
                timeout=90,
                what="batches half sent",
            )
            kill_cluster(first)
            killed_at = time.monotonic()
            time.sleep(0.5)  # requests already on the wire land at the fake server
            reached = sends_per_message(fake_graph)
            assert 0 < sum(reached.values()) < len(ids), "the worker was not killed mid-way"
            assert mid_batch.exists(), "no batch was cut short"

            echo_sent_statuses(fake_graph)  # Meta's status webhooks link the lost answers

            second = start_cluster(fake_graph, log, WHATSAPP_SEND_CONCURRENCY="3")
            try:
                time.sleep(max(0.0, killed_at + CLAIM_TIMEOUT + 0.5 - time.monotonic()))

                wait_all_sent(ids, timeout=90)
                time.sleep(1.5)  # duplicate tasks still in flight get their chance to misbehave
            finally:
                kill_cluster(second)
        finally:
            kill_cluster(first)

    per_message = sends_per_message(fake_graph)
    assert set(per_message) == set(ids), "a message was lost (or an unknown one was sent)"
    assert [m for m, n in per_message.items() if n > 1] == [], "a message was sent twice"
    assert not Message.objects.filter(pk__in=ids, wamid__isnull=True).exists()
    assert not Message.objects.filter(pk__in=ids, claim_token__isnull=False).exists()
