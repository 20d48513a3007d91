"""The webhook's set-based status writer (``messaging.webhooks.message_statuses_apply``)
against the one-by-one rule it must reproduce (``messaging.services.message_status_apply``):
for random starting states and random, out-of-order, repeated sequences of Meta's
statuses, both leave every message in exactly the same state."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from accounts.tests.factories import AccountFactory
from leads.tests.factories import LeadFactory, MessageFactory
from messaging.models import Message
from messaging.services import message_status_apply
from messaging.webhooks import StatusUpdate, message_statuses_apply

pytestmark = pytest.mark.django_db

FIELDS = ("status", "sent_at", "delivered_at", "read_at", "failed_at", "error_code", "error_title")
START = datetime(2026, 1, 1, tzinfo=UTC)
EVENTS = ["sent", "delivered", "read", "failed", "deleted"]


def _initial(rng: random.Random) -> dict:
    status = rng.choice(["queued", "sent", "delivered", "read", "failed", "timed out", "answer lost"])
    if status in ("timed out", "answer lost"):
        # Failed for want of Meta's answer: Meta's status webhook decides what happened.
        code = "TIMEOUT" if status == "timed out" else "UNKNOWN_OUTCOME"
        return {"status": "failed", "failed_at": START, "error_code": code, "error_title": "no answer"}
    stamps = {}
    if status in ("sent", "delivered", "read"):
        stamps["sent_at"] = START
    if status in ("delivered", "read") and rng.random() < 0.8:
        stamps["delivered_at"] = START + timedelta(seconds=1)
    if status == "read":
        stamps["read_at"] = START + timedelta(seconds=2)
    if status == "failed":
        stamps.update(failed_at=START, error_code="131026", error_title="Message undeliverable")
    return {"status": status, **stamps}


def _events(rng: random.Random) -> list[tuple[str, datetime, str]]:
    events = []
    for _ in range(rng.randint(1, 5)):
        kind = rng.choice(EVENTS)
        code = rng.choice(["131026", "131047", "131050"]) if kind == "failed" else ""
        events.append((kind, START + timedelta(minutes=rng.randint(1, 30)), code))
    return events


@pytest.mark.parametrize("seed", range(6))
def test_the_bulk_writer_matches_message_status_apply_exactly(seed):
    rng = random.Random(seed)
    account = AccountFactory()
    lead = LeadFactory(account=account)
    cases = []
    for index in range(60):
        initial = _initial(rng)
        one = MessageFactory(lead=lead, direction="outbound", wamid=f"one-{seed}-{index}", **initial)
        bulk = MessageFactory(lead=lead, direction="outbound", wamid=f"bulk-{seed}-{index}", **initial)
        cases.append((one, bulk, _events(rng)))

    for one, _, events in cases:
        for status, at, code in events:
            message_status_apply(wamid=one.wamid, status=status, at=at, error_code=code, error_title=f"title {code}")
    # One delivery carrying every message's statuses, interleaved across messages (as
    # Meta batches them), each message's own in their order.
    queues = [
        [StatusUpdate(bulk.wamid, s, at, "", code, f"title {code}") for s, at, code in events]
        for _, bulk, events in cases
    ]
    updates = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        updates.append(queue.pop(0))
    message_statuses_apply(account_id=account.pk, updates=updates)

    for one, bulk, events in cases:
        one.refresh_from_db()
        bulk.refresh_from_db()
        assert [getattr(bulk, f) for f in FIELDS] == [getattr(one, f) for f in FIELDS], events


def test_statuses_of_one_message_keep_their_order_within_a_batch():
    """failed then delivered: fails (delivered can't revive it); delivered then failed:
    stays delivered — exactly as one by one."""
    account = AccountFactory()
    lead = LeadFactory(account=account)
    first = MessageFactory(lead=lead, direction="outbound", status="sent", wamid="w-first")
    second = MessageFactory(lead=lead, direction="outbound", status="sent", wamid="w-second")
    at = START + timedelta(minutes=1)

    message_statuses_apply(
        account_id=account.pk,
        updates=[
            StatusUpdate("w-first", "failed", at, error_code="131026", error_title="Undeliverable"),
            StatusUpdate("w-first", "delivered", at),
            StatusUpdate("w-second", "delivered", at),
            StatusUpdate("w-second", "failed", at, error_code="131026", error_title="Undeliverable"),
        ],
    )

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.error_code) == ("failed", "131026")
    assert (second.status, second.error_code) == ("delivered", "")


def test_another_accounts_messages_are_never_touched():
    mine, theirs = AccountFactory(), AccountFactory()
    message = MessageFactory(lead=LeadFactory(account=theirs), direction="outbound", status="sent", wamid="w-theirs")

    matched = message_statuses_apply(account_id=mine.pk, updates=[StatusUpdate("w-theirs", "read", START)])

    message.refresh_from_db()
    assert matched == 0
    assert message.status == "sent"
    assert message.read_at is None


def test_inbound_messages_are_never_given_a_status():
    account = AccountFactory()
    message = MessageFactory(lead=LeadFactory(account=account), direction="inbound", status="delivered", wamid="w-in")

    message_statuses_apply(account_id=account.pk, updates=[StatusUpdate("w-in", "read", START)])

    message.refresh_from_db()
    assert message.status == "delivered"


def test_a_large_batch_is_applied_in_chunks(django_assert_max_num_queries):
    account = AccountFactory()
    lead = LeadFactory(account=account)
    Message.objects.bulk_create(
        [
            Message(account=account, lead=lead, direction="outbound", status="sent", wamid=f"big-{i}")
            for i in range(1200)
        ]
    )
    updates = [StatusUpdate(f"big-{i}", "delivered", START + timedelta(seconds=i % 7)) for i in range(1200)]

    with django_assert_max_num_queries(3):  # 500 + 500 + 200
        matched = message_statuses_apply(account_id=account.pk, updates=updates)

    assert matched == 1200
    assert Message.objects.filter(status="delivered", delivered_at__isnull=False).count() == 1200
    assert Message.objects.get(wamid="big-8").delivered_at == START + timedelta(seconds=1)


def test_rows_with_nothing_to_change_are_not_rewritten():
    account = AccountFactory()
    lead = LeadFactory(account=account)
    MessageFactory(lead=lead, direction="outbound", status="sent", wamid="w-1")
    read = [StatusUpdate("w-1", "read", START)]

    assert message_statuses_apply(account_id=account.pk, updates=read) == 1
    assert message_statuses_apply(account_id=account.pk, updates=read) == 0  # Meta's retry
    assert message_statuses_apply(account_id=account.pk, updates=[StatusUpdate("w-1", "delivered", START)]) == 0
