"""Batch delivery (messaging.services.messages_deliver_batch): one claim for the batch,
the provider calls concurrent within the number's cap, results written set-based — and
still each message at most once to Meta: duplicate batch tasks racing, a dead worker's
claim taken over only after MESSAGE_CLAIM_TIMEOUT, a retryable error giving back the
rest unclaimed. The real Cloud API client talks to the fake Graph API server; requests
are counted per message id (``biz_opaque_callback_data``)."""

import ast
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Schedule
from django_q.scheduler import scheduler

from leads.models import Lead
from messaging import services, tasks, webhooks
from messaging.models import Message, Template, WhatsAppConnection
from messaging.providers import CloudApiProvider
from messaging.tests.test_delivery import make_lead, queue_message, sends_per_message

PROVIDER_ATTEMPTS = CloudApiProvider(phone_number_id="x", waba_id="y", access_token="z").max_attempts


@pytest.fixture
def no_backoff(monkeypatch):
    """Retries at once: the backoff itself is the provider's business, tested there."""
    monkeypatch.setattr(CloudApiProvider, "retry_pause", lambda self, attempt, error: 0.0)


def ids_of(messages: list[Message]) -> list[str]:
    return [str(m.pk) for m in messages]


def fresh(messages: list[Message]) -> list[Message]:
    by_id = Message.objects.in_bulk([m.pk for m in messages])
    return [by_id[m.pk] for m in messages]


# --- One batch ------------------------------------------------------------------------------


def test_a_batch_sends_each_message_once_and_records_everything(account, whatsapp_connection, fake_graph, settings):
    settings.WHATSAPP_SEND_CONCURRENCY = 4
    messages = [queue_message(account, text=f"Hello {i}") for i in range(25)]

    result = services.messages_deliver_batch(message_ids=ids_of(messages))

    assert result.statuses == {Message.Status.SENT: 25}
    assert (result.missing, result.retry_ids, result.retry_error) == (0, [], None)
    assert sends_per_message(fake_graph) == {str(m.pk): 1 for m in messages}
    bodies = {body["biz_opaque_callback_data"]: body for body in fake_graph.sent_messages()}
    for message in fresh(messages):
        assert message.status == Message.Status.SENT
        assert message.wamid.startswith("wamid.FAKE")
        assert message.sent_at is not None
        assert message.attempts == 1
        assert message.claim_token is None  # the claim is spent
        assert bodies[str(message.pk)]["text"]["body"] == message.body
        assert bodies[str(message.pk)]["to"] == message.lead.phone.lstrip("+")
        lead = Lead.objects.get(pk=message.lead_id)
        assert lead.last_outbound_at == lead.last_message_at == message.sent_at
    assert len({m.wamid for m in fresh(messages)}) == 25


def test_a_batch_costs_the_same_queries_for_5_messages_as_for_60(account, whatsapp_connection, fake_graph, settings):
    settings.WHATSAPP_SEND_CONCURRENCY = 8
    # A number upgraded to 1,000 a second: the batch is not held by the cap (a batch
    # the cap paces adds one opt-out recheck per half second and a write per second).
    WhatsAppConnection.objects.filter(pk=whatsapp_connection.pk).update(throughput_cap=1000)
    small = [queue_message(account) for _ in range(5)]
    large = [queue_message(account) for _ in range(60)]

    with CaptureQueriesContext(connection) as few:
        services.messages_deliver_batch(message_ids=ids_of(small))
    with CaptureQueriesContext(connection) as many:
        result = services.messages_deliver_batch(message_ids=ids_of(large))

    assert result.statuses == {Message.Status.SENT: 60}
    # The claim, the read, the connection, the sent messages and their leads. (The
    # throughput counter is in the cache: Redis, or this test's database.)
    few, many = ([q["sql"] for q in run if "messaging_" in q["sql"] or "leads_" in q["sql"]] for run in (few, many))
    assert len(many) == len(few) == 5


def test_templates_and_texts_in_one_batch_go_out_as_meta_expects(account, whatsapp_connection, fake_graph, settings):
    settings.WHATSAPP_SEND_CONCURRENCY = 3
    Template.objects.create(
        account=account,
        name="appointment_reminder",
        language="en_US",
        status="APPROVED",
        components=[{"type": "BODY", "text": "Hi {{1}}, see you on {{2}}."}],
    )
    text = queue_message(account, text="Plain text")
    template = services.message_send(
        account=account,
        lead=make_lead(account),
        template=services.TemplateRef(name="appointment_reminder", params=["Asha", "Monday"]),
        deliver_now=False,
    )

    result = services.messages_deliver_batch(message_ids=[text.pk, template.pk])

    assert result.statuses == {Message.Status.SENT: 2}
    bodies = {body["biz_opaque_callback_data"]: body for body in fake_graph.sent_messages()}
    assert bodies[str(text.pk)]["type"] == "text"
    assert bodies[str(template.pk)]["template"] == {
        "name": "appointment_reminder",
        "language": {"code": "en_US"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Asha"}, {"type": "text", "text": "Monday"}]}
        ],
    }


def test_opted_out_leads_in_a_batch_fail_without_a_request(account, whatsapp_connection, fake_graph):
    messages = [queue_message(account) for _ in range(4)]
    Lead.objects.filter(pk=messages[1].lead_id).update(is_opted_out=True, opted_out_at=timezone.now())

    result = services.messages_deliver_batch(message_ids=ids_of(messages))

    assert result.statuses == {Message.Status.SENT: 3, Message.Status.FAILED: 1}
    opted_out = Message.objects.get(pk=messages[1].pk)
    assert (opted_out.status, opted_out.error_code, opted_out.wamid) == (Message.Status.FAILED, "OPT_OUT", None)
    assert sends_per_message(fake_graph) == {str(m.pk): 1 for m in messages if m.pk != opted_out.pk}


def test_ids_of_no_message_are_counted_missing_and_others_by_their_status(account, whatsapp_connection, fake_graph):
    sent = queue_message(account)
    services.messages_deliver_batch(message_ids=[sent.pk])
    deleted = queue_message(account)
    deleted.lead.delete()
    waiting = queue_message(account)

    result = services.messages_deliver_batch(
        message_ids=[sent.pk, deleted.pk, "not-a-uuid", 12, str(uuid.uuid4()), waiting.pk, waiting.pk]
    )

    assert result.statuses == {Message.Status.SENT: 2}  # the one sent before, and `waiting`
    assert result.missing == 4
    assert sends_per_message(fake_graph) == {str(sent.pk): 1, str(waiting.pk): 1}


def test_a_message_meta_refused_fails_with_its_error_and_the_rest_go_out(
    account, whatsapp_connection, fake_graph, settings
):
    settings.WHATSAPP_SEND_CONCURRENCY = 1  # in order: the first request is the first message's
    messages = [queue_message(account) for _ in range(3)]
    fake_graph.fail_next(code=131026, status=400)

    result = services.messages_deliver_batch(message_ids=ids_of(messages))

    assert result.statuses == {Message.Status.FAILED: 1, Message.Status.SENT: 2}
    assert result.retry_ids == []
    first = Message.objects.get(pk=messages[0].pk)
    assert (first.status, first.error_code, first.claim_token) == (Message.Status.FAILED, "131026", None)
    assert first.error_title and first.failed_at
    assert sends_per_message(fake_graph) == {str(m.pk): 1 for m in messages}


# --- Exactly once ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_duplicate_batch_tasks_racing_send_each_message_once(account, whatsapp_connection, fake_graph, settings):
    """django-q2 hands the same batch to several workers (and overlapping batches: a
    retry next to the original); they claim at the same instant."""
    settings.WHATSAPP_SEND_CONCURRENCY = 4
    fake_graph.state.latency = 0.02  # still sending when the others claim
    messages = [queue_message(account, text=f"Race {i}") for i in range(30)]
    ids = ids_of(messages)
    batches = [ids, list(reversed(ids)), ids[10:], ids[:20]]
    barrier = threading.Barrier(len(batches))
    results: list = []

    def deliver(batch: list[str]) -> None:
        try:
            barrier.wait()
            results.append(services.messages_deliver_batch(message_ids=batch))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) == len(batches)
    assert sends_per_message(fake_graph) == {m: 1 for m in ids}
    for message in fresh(messages):
        assert message.status == Message.Status.SENT
        assert message.attempts == 1  # one claim won; the others found it taken
    # Each task accounts for every id it was given: sent by it, or found (queued while
    # another holds it, or sent already).
    assert sorted(sum(r.statuses.values()) for r in results) == sorted(len(batch) for batch in batches)
    assert all(set(r.statuses) <= {Message.Status.SENT, Message.Status.QUEUED} for r in results)


def test_a_dead_workers_claim_is_taken_over_only_after_the_claim_timeout(
    account, whatsapp_connection, fake_graph, settings
):
    """A worker claimed a batch (its token on the rows) and died before calling Meta
    for most of it; for one message it got through, and Meta's status webhook linked
    the wamid through our id."""
    messages = [queue_message(account) for _ in range(5)]
    dead_token = uuid.uuid4()
    almost = timezone.now() - timedelta(seconds=settings.MESSAGE_CLAIM_TIMEOUT - 5)
    Message.objects.filter(pk__in=[m.pk for m in messages]).update(
        claimed_at=almost, claim_token=dead_token, attempts=1
    )
    services.message_status_apply(
        wamid="wamid.ECHO-DEAD", status=Message.Status.SENT, at=timezone.now(), reference=str(messages[0].pk)
    )

    result = services.messages_deliver_batch(message_ids=ids_of(messages))

    assert result.statuses == {Message.Status.SENT: 1, Message.Status.QUEUED: 4}  # nobody may send them yet
    assert fake_graph.sent_messages() == []

    stale = timezone.now() - timedelta(seconds=settings.MESSAGE_CLAIM_TIMEOUT + 1)
    Message.objects.filter(claim_token=dead_token).update(claimed_at=stale)
    result = services.messages_deliver_batch(message_ids=ids_of(messages))

    assert result.statuses == {Message.Status.SENT: 5}
    assert sends_per_message(fake_graph) == {str(m.pk): 1 for m in messages[1:]}
    linked, *taken_over = fresh(messages)
    assert (linked.wamid, linked.attempts) == ("wamid.ECHO-DEAD", 1)
    for message in taken_over:
        assert message.attempts == 2
        assert message.claim_token is None
        assert message.wamid.startswith("wamid.FAKE")


def test_a_status_webhook_that_beats_the_batch_write_is_not_moved_backwards(
    account, whatsapp_connection, fake_graph, monkeypatch
):
    messages = [queue_message(account) for _ in range(3)]
    original = services._sent_update

    def webhook_first(sent, now):
        # Meta's `read` for the first message lands between its answer and our write.
        first_id, first_wamid = sent[0]
        services.message_status_apply(
            wamid=first_wamid, status=Message.Status.READ, at=timezone.now(), reference=str(first_id)
        )
        return original(sent, now)

    monkeypatch.setattr(services, "_sent_update", webhook_first)
    result = services.messages_deliver_batch(message_ids=ids_of(messages))

    assert result.statuses == {Message.Status.READ: 1, Message.Status.SENT: 2}
    read = [m for m in fresh(messages) if m.status == Message.Status.READ]
    assert len(read) == 1
    assert read[0].sent_at and read[0].delivered_at and read[0].read_at


# --- Retryable errors -----------------------------------------------------------------------


def test_a_retryable_error_gives_the_rest_back_unclaimed_and_a_later_run_sends_them(
    account, whatsapp_connection, fake_graph, settings, monkeypatch, no_backoff
):
    settings.WHATSAPP_SEND_CONCURRENCY = 1
    messages = [queue_message(account) for _ in range(4)]
    # Meta's throughput error on every one of the first message's attempts.
    fake_graph.fail_next(code=130429, status=400, times=PROVIDER_ATTEMPTS)

    statuses = tasks.deliver_messages(ids_of(messages))

    assert statuses == {}
    assert sends_per_message(fake_graph) == {str(messages[0].pk): PROVIDER_ATTEMPTS}
    first, *rest = fresh(messages)
    assert (first.status, first.claimed_at, first.claim_token, first.attempts) == (Message.Status.QUEUED, None, None, 1)
    for message in rest:  # never tried: as if never claimed
        assert (message.status, message.claimed_at, message.claim_token, message.attempts) == ("queued", None, None, 0)
    [retry] = Schedule.objects.filter(func="messaging.tasks.deliver_messages")
    assert ast.literal_eval(retry.args) == (ids_of(messages),)  # the failing one first
    assert retry.next_run > timezone.now()  # with backoff

    Schedule.objects.filter(pk=retry.pk).update(next_run=timezone.now() - timedelta(seconds=1))
    monkeypatch.setattr(Conf, "SYNC", True)
    scheduler()

    assert [m.status for m in fresh(messages)] == [Message.Status.SENT] * 4
    counts = sends_per_message(fake_graph)
    assert counts == {str(messages[0].pk): PROVIDER_ATTEMPTS + 1, **{str(m.pk): 1 for m in messages[1:]}}


@pytest.mark.parametrize(
    ("failure", "holds_the_batch"),
    [({"code": 2, "status": 500}, False), ({"code": 130429, "status": 400}, True)],
    ids=["server-error", "meta-throughput"],
)
def test_only_metas_push_back_holds_up_the_rest_of_a_batch(
    account, whatsapp_connection, fake_graph, settings, monkeypatch, failure, holds_the_batch
):
    """A transient server error delays only its own message's retry (the others go out
    meanwhile, and the retry left alone at the end is handed to a later task); Meta's
    throughput error (130429) holds every new send of the batch until the retry is due."""
    settings.WHATSAPP_SEND_CONCURRENCY = 1
    monkeypatch.setattr(CloudApiProvider, "retry_pause", lambda self, attempt, error: 0.5)
    messages = [queue_message(account) for _ in range(4)]
    fake_graph.fail_next(**failure, times=1)

    result = services.messages_deliver_batch(message_ids=ids_of(messages))

    order = [body["biz_opaque_callback_data"] for body in fake_graph.sent_messages()]
    first = str(messages[0].pk)
    if holds_the_batch:
        assert result.statuses == {Message.Status.SENT: 4}
        assert order[:2] == [first, first]  # nothing else went out before its retry
        assert len(order) == 5
    else:
        assert result.statuses == {Message.Status.SENT: 3}
        assert order == [first, *ids_of(messages[1:])]  # the others went out meanwhile
        assert result.retry_ids == [first]  # handed back, unclaimed, for a later task
        assert fresh(messages)[0].claim_token is None


def test_throttling_inside_a_batch_is_retried_with_a_slot_each_and_sends_once(
    account, whatsapp_connection, fake_graph, settings, monkeypatch, no_backoff
):
    """Provider retries (c): each attempt takes a throughput slot of the number."""
    settings.WHATSAPP_SEND_CONCURRENCY = 4
    messages = [queue_message(account) for _ in range(10)]
    fake_graph.fail_next(code=130429, status=400, times=3)
    slots, late = Counter(), []
    original_take, original_attempt = services.throughput_take, services._attempt

    def counting(*, key, per_second, count):
        second, granted = original_take(key=key, per_second=per_second, count=count)
        slots[key] += granted
        return second, granted

    def attempt(send, second):
        outcome = original_attempt(send, second)
        late.append(outcome is services._LATE)  # a slot whose second ended unused
        return outcome

    monkeypatch.setattr(services, "throughput_take", counting)
    monkeypatch.setattr(services, "_attempt", attempt)
    result = services.messages_deliver_batch(message_ids=ids_of(messages))

    assert result.statuses == {Message.Status.SENT: 10}
    requests = len(fake_graph.sent_messages())
    assert requests == 13  # three refused, retried
    # Every request had its slot; slots are taken a pool's worth at a time and may go
    # unused when their second ends (never more than one pool's worth in a second).
    assert requests + sum(late) <= slots[whatsapp_connection.phone_number_id] <= requests + sum(late) + 2 * 4
    accepted = [m.wamid for m in fresh(messages)]
    assert len(set(accepted)) == 10


def test_the_single_send_providers_retries_take_a_slot_each(account, whatsapp_connection, fake_graph, monkeypatch):
    calls = []
    monkeypatch.setattr(
        "messaging.providers.throughput_wait", lambda *, key, per_second: calls.append((key, per_second)) or 0.0
    )
    provider = CloudApiProvider.for_connection(whatsapp_connection, backoff=0.01)
    fake_graph.fail_next(code=130429, status=400, times=2)

    provider.send_text(to="919800000001", body="Hi", reference="r")

    assert len(fake_graph.sent_messages()) == 3
    assert calls == [("1001", whatsapp_connection.throughput_cap)] * 3


def test_a_batch_out_of_time_for_slots_gives_back_what_it_could_not_send(
    account, whatsapp_connection, fake_graph, settings
):
    """A number saturated by other sends: the task must end well before django-q2's
    timeout kills it (its claims would then wait MESSAGE_CLAIM_TIMEOUT for the sweeper)."""
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 2}  # a budget of 1 s
    whatsapp_connection.throughput_cap = 1
    whatsapp_connection.save()
    messages = [queue_message(account) for _ in range(5)]

    result = services.messages_deliver_batch(message_ids=ids_of(messages))

    sent = result.statuses.get(Message.Status.SENT, 0)
    assert 1 <= sent <= 2
    assert result.retry_error.code == services.DEFERRED and result.retry_error.retryable
    assert len(result.retry_ids) == 5 - sent
    for message in Message.objects.filter(pk__in=result.retry_ids):
        assert (message.claimed_at, message.claim_token, message.attempts) == (None, None, 0)
    assert sum(sends_per_message(fake_graph).values()) == sent


# --- The cap --------------------------------------------------------------------------------


def test_no_second_lets_out_more_than_the_cap(account, whatsapp_connection, fake_graph, settings, monkeypatch):
    settings.WHATSAPP_SEND_CONCURRENCY = 8
    whatsapp_connection.throughput_cap = 10
    whatsapp_connection.save()
    messages = [queue_message(account) for _ in range(25)]
    let_out: list[float] = []
    original = CloudApiProvider.send_text

    def timed(self, **kwargs):
        let_out.append(time.time())  # after the slot's second was checked: the request goes now
        return original(self, **kwargs)

    monkeypatch.setattr(CloudApiProvider, "send_text", timed)
    time.sleep(1.02 - time.time() % 1)  # the start of a second: 25 messages need three of them
    result = services.messages_deliver_batch(message_ids=ids_of(messages))

    assert result.statuses == {Message.Status.SENT: 25}
    per_second = Counter(int(t) for t in let_out)
    assert max(per_second.values()) <= 10, per_second
    assert len(per_second) >= 3
    assert sends_per_message(fake_graph) == {str(m.pk): 1 for m in messages}


# --- The sandbox ----------------------------------------------------------------------------


def test_a_sandbox_batch_walks_its_statuses_in_one_task(
    account, monkeypatch, django_capture_on_commit_callbacks, settings
):
    settings.WHATSAPP_SEND_CONCURRENCY = 4
    messages = [queue_message(account) for _ in range(3)]  # no connection: the sandbox
    queued = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kw: queued.append((func, args)))

    with django_capture_on_commit_callbacks(execute=True):
        result = services.messages_deliver_batch(message_ids=ids_of(messages))

    assert result.statuses == {Message.Status.SENT: 3}
    assert all(m.wamid.startswith("wamid.sandbox.") for m in fresh(messages))
    [args] = [args for func, args in queued if func == "messaging.tasks.sandbox_walk_statuses"]
    assert sorted(args) == sorted(ids_of(messages))

    monkeypatch.setattr(tasks, "SANDBOX_STEP_SECONDS", 0)
    calls = []
    original = webhooks.message_statuses_apply
    monkeypatch.setattr(webhooks, "message_statuses_apply", lambda **kw: calls.append(kw) or original(**kw))
    tasks.sandbox_walk_statuses(*args)

    assert len(calls) == 2  # delivered, then read: one write each for the whole batch
    for message in fresh(messages):
        assert message.status == Message.Status.READ
        assert message.sent_at <= message.delivered_at <= message.read_at
