"""Sends whose outcome we can't know, and the ones we can.

A POST that reached Meta and lost its answer (a read timeout, a connection reset or a
broken pipe after the request went out) may have been accepted: it is never repeated,
the message fails as TIMEOUT / UNKNOWN_OUTCOME, and Meta's status webhook — which echoes
our message id as ``biz_opaque_callback_data`` — corrects it later. A request that
certainly never left (connection refused, connect timeout, DNS) is retried. Timeouts
come from WHATSAPP_CONNECT_TIMEOUT / WHATSAPP_READ_TIMEOUT."""

import socket
import time
from datetime import UTC, datetime

import pytest
import requests
from django.utils import timezone
from django_q.models import Schedule
from urllib3.exceptions import (
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from messaging import providers, services, tasks
from messaging.models import Message
from messaging.providers import CloudApiProvider, ProviderError
from messaging.tests.test_delivery import queue_message, sends_per_message
from messaging.tests.test_webhook import deliver, failure, status, statuses


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "webhook": "100000/15m"}


@pytest.fixture
def no_backoff(monkeypatch):
    monkeypatch.setattr(CloudApiProvider, "retry_pause", lambda self, attempt, error: 0.0)


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- (a) Lost answers are not retried; requests that never left are --------------------------


def test_a_connection_reset_after_the_post_fails_the_message_once_without_retry(
    account, whatsapp_connection, fake_graph
):
    message = queue_message(account)
    fake_graph.fail_next(drop=True, times=5)  # would swallow retries too, if there were any

    assert tasks.deliver_message(str(message.pk)) == Message.Status.FAILED

    message.refresh_from_db()
    assert message.error_code == providers.UNKNOWN_OUTCOME
    assert message.error_title
    assert (message.wamid, message.failed_at is not None) == (None, True)
    assert sends_per_message(fake_graph) == {str(message.pk): 1}  # Meta may have it: never a second POST
    assert not Schedule.objects.filter(func__startswith="messaging.tasks.deliver").exists()
    # A duplicate task changes nothing.
    assert tasks.deliver_message(str(message.pk)) == Message.Status.FAILED
    assert sends_per_message(fake_graph) == {str(message.pk): 1}


def test_a_reset_inside_a_batch_fails_that_message_only(account, whatsapp_connection, fake_graph, settings):
    settings.WHATSAPP_SEND_CONCURRENCY = 1
    messages = [queue_message(account) for _ in range(3)]
    fake_graph.fail_next(drop=True)

    result = services.messages_deliver_batch(message_ids=[m.pk for m in messages])

    assert result.statuses == {Message.Status.FAILED: 1, Message.Status.SENT: 2}
    assert result.retry_ids == []  # not "given back": it may have gone out
    first = Message.objects.get(pk=messages[0].pk)
    assert first.error_code == providers.UNKNOWN_OUTCOME
    assert sends_per_message(fake_graph) == {str(m.pk): 1 for m in messages}


def test_a_read_timeout_fails_as_timeout_within_the_configured_seconds(
    account, whatsapp_connection, fake_graph, settings
):
    settings.WHATSAPP_READ_TIMEOUT = 0.3
    message = queue_message(account)
    fake_graph.fail_next(code=None, status=200, delay=1.5, body="{}")

    started = time.monotonic()
    delivered = services.message_deliver(message_id=message.pk)

    assert time.monotonic() - started < 1.5  # the read timeout, not the answer, ended the wait
    assert (delivered.status, delivered.error_code) == (Message.Status.FAILED, providers.TIMEOUT)
    assert sends_per_message(fake_graph) == {str(message.pk): 1}


def test_connection_refused_is_retried_and_the_message_waits_for_the_worker(
    account, whatsapp_connection, fake_graph, settings, no_backoff
):
    settings.WHATSAPP_GRAPH_URL = f"http://127.0.0.1:{closed_port()}/v21.0"
    message = queue_message(account)

    assert tasks.deliver_message(str(message.pk)) == "retry"

    message.refresh_from_db()
    assert (message.status, message.claimed_at, message.claim_token) == (Message.Status.QUEUED, None, None)
    assert message.error_code == ""
    [retry] = Schedule.objects.filter(func="messaging.tasks.deliver_message")
    assert retry.next_run > timezone.now()

    # Meta is reachable again: the retry sends it, once.
    settings.WHATSAPP_GRAPH_URL = fake_graph.base_url
    assert tasks.deliver_message(str(message.pk)) == Message.Status.SENT
    assert sends_per_message(fake_graph) == {str(message.pk): 1}


def test_the_provider_retries_a_refused_connection_every_attempt(fake_graph):
    provider = CloudApiProvider(
        phone_number_id="1001",
        waba_id="2002",
        access_token=fake_graph.state.access_token,
        base_url=f"http://127.0.0.1:{closed_port()}/v21.0",
        backoff=0.01,
        max_attempts=3,
    )
    tried = []
    provider.throttle = lambda: tried.append(1)

    with pytest.raises(ProviderError) as refused:
        provider.send_text(to="919800000001", body="Hi", reference="r")

    assert (refused.value.code, refused.value.retryable) == ("NETWORK", True)
    assert len(tried) == 3  # three attempts, each with its throughput slot


def _connection_error(reason: Exception) -> requests.exceptions.ConnectionError:
    """What requests raises when urllib3 gives up with ``reason``."""
    return requests.exceptions.ConnectionError(MaxRetryError(None, "/v21.0/1001/messages", reason=reason))


@pytest.mark.parametrize(
    ("error", "nothing_sent"),
    [
        (_connection_error(NewConnectionError(None, "[Errno 111] Connection refused")), True),
        (_connection_error(NameResolutionError("graph.facebook.com", None, socket.gaierror("Name unknown"))), True),
        (requests.exceptions.ConnectTimeout("connect timed out"), True),
        (requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104))), False),
        (requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", BrokenPipeError(32))), False),
        (requests.exceptions.ConnectionError(ReadTimeoutError(None, "/", "read timed out")), False),
    ],
    ids=["refused", "dns", "connect-timeout", "reset", "broken-pipe", "timeout-in-body"],
)
def test_only_errors_before_the_request_left_count_as_nothing_sent(error, nothing_sent):
    assert providers._nothing_sent(error) is nothing_sent


@pytest.mark.parametrize("kind", ["reset", "dns"])
def test_a_post_is_retried_only_when_nothing_was_sent(kind, monkeypatch):
    provider = CloudApiProvider(phone_number_id="1001", waba_id="2002", access_token="t", backoff=0, max_attempts=3)
    errors = {
        "reset": requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104))),
        "dns": _connection_error(NameResolutionError("graph.facebook.com", None, socket.gaierror("Name unknown"))),
    }
    calls = []

    def send(self, request, **kwargs):
        calls.append(request.url)
        raise errors[kind]

    monkeypatch.setattr(requests.Session, "send", send)
    with pytest.raises(ProviderError) as failed:
        provider.send_text(to="919800000001", body="Hi", reference="r")

    if kind == "reset":
        assert (failed.value.code, failed.value.retryable, len(calls)) == (providers.UNKNOWN_OUTCOME, False, 1)
    else:
        assert (failed.value.code, failed.value.retryable, len(calls)) == ("NETWORK", True, 3)


def test_the_client_timeouts_come_from_the_settings(settings):
    settings.WHATSAPP_CONNECT_TIMEOUT = 3
    settings.WHATSAPP_READ_TIMEOUT = 7

    provider = CloudApiProvider(phone_number_id="1001", waba_id="2002", access_token="t")

    assert provider.timeout == (3, 7)


# --- (b) Meta's status webhook settles an unknown outcome --------------------------------------


@pytest.fixture
def lost_answer(account, whatsapp_connection, fake_graph, settings) -> Message:
    """A message whose POST reached Meta and whose answer was lost (a reset)."""
    message = queue_message(account)
    fake_graph.fail_next(drop=True)
    services.message_deliver(message_id=message.pk)
    message.refresh_from_db()
    assert (message.status, message.error_code) == (Message.Status.FAILED, providers.UNKNOWN_OUTCOME)
    return message


@pytest.fixture
def timed_out(account, whatsapp_connection, fake_graph, settings) -> Message:
    settings.WHATSAPP_READ_TIMEOUT = 0.3
    message = queue_message(account)
    fake_graph.fail_next(code=None, status=200, delay=1.0, body="{}")
    services.message_deliver(message_id=message.pk)
    message.refresh_from_db()
    assert (message.status, message.error_code) == (Message.Status.FAILED, providers.TIMEOUT)
    return message


@pytest.mark.parametrize("outcome", ["lost_answer", "timed_out"])
def test_metas_status_webhook_moves_an_unknown_outcome_on_and_clears_the_error(outcome, request, client):
    message = request.getfixturevalue(outcome)
    sent_at, delivered_at = 1_790_000_000, 1_790_000_030

    answer = deliver(
        client,
        statuses(status("wamid.LATE1", "sent", at=sent_at, biz_opaque_callback_data=str(message.pk))),
    )
    assert answer.status_code == 200, answer.content

    message.refresh_from_db()
    assert (message.status, message.wamid) == (Message.Status.SENT, "wamid.LATE1")
    assert message.sent_at == datetime.fromtimestamp(sent_at, tz=UTC)
    assert (message.error_code, message.error_title, message.failed_at) == ("", "", None)

    # Later statuses come by wamid alone, as for any message.
    deliver(client, statuses(status("wamid.LATE1", "delivered", at=delivered_at)))
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    assert message.delivered_at == datetime.fromtimestamp(delivered_at, tz=UTC)
    assert message.sent_at == datetime.fromtimestamp(sent_at, tz=UTC)


def test_a_read_that_arrives_first_fills_every_timestamp(lost_answer, client):
    at = 1_790_000_100
    deliver(client, statuses(status("wamid.LATE2", "read", at=at, biz_opaque_callback_data=str(lost_answer.pk))))

    lost_answer.refresh_from_db()
    assert lost_answer.status == Message.Status.READ
    stamp = datetime.fromtimestamp(at, tz=UTC)
    assert lost_answer.sent_at == lost_answer.delivered_at == lost_answer.read_at == stamp
    assert (lost_answer.error_code, lost_answer.failed_at) == ("", None)


def test_metas_failure_replaces_the_unknown_outcome_with_its_error(lost_answer, client):
    deliver(
        client,
        statuses(status("wamid.LATE3", "failed", biz_opaque_callback_data=str(lost_answer.pk), errors=failure(131026))),
    )

    lost_answer.refresh_from_db()
    assert (lost_answer.status, lost_answer.error_code) == (Message.Status.FAILED, "131026")
    assert lost_answer.error_title == "Message undeliverable"


def test_a_message_that_failed_for_a_known_reason_stays_failed(account, whatsapp_connection, fake_graph, client):
    message = queue_message(account)
    fake_graph.fail_next(code=131026, status=400)
    services.message_deliver(message_id=message.pk)

    # An echo naming it (it can't really happen: Meta refused it) changes nothing.
    deliver(client, statuses(status("wamid.NOPE", "delivered", biz_opaque_callback_data=str(message.pk))))

    message.refresh_from_db()
    assert (message.status, message.error_code) == (Message.Status.FAILED, "131026")


def test_the_one_by_one_rule_settles_an_unknown_outcome_too(lost_answer):
    moved = services.message_status_apply(
        wamid="wamid.LATE4", status=Message.Status.DELIVERED, at=timezone.now(), reference=str(lost_answer.pk)
    )

    assert moved
    lost_answer.refresh_from_db()
    assert (lost_answer.status, lost_answer.error_code, lost_answer.failed_at) == ("delivered", "", None)
    assert lost_answer.sent_at and lost_answer.delivered_at
