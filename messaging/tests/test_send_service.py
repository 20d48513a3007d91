"""The one sending service, messaging.services.message_send (and message_deliver,
raise_for_failed, message_send_bulk): the sandbox end to end, and the real Cloud API
client against the fake Graph API server — the exact JSON Meta receives, and Meta's
errors mapped to outcomes."""

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.tests.factories import AccountFactory
from heroshhi.errors import ValidationFailed
from leads.models import Lead
from messaging import services, tasks, webhooks
from messaging.models import Message, Template, WhatsAppConnection
from messaging.services import (
    OptOutBlocked,
    SendFailed,
    TemplateRef,
    TemplateUnavailable,
    WindowClosed,
    message_send,
    raise_for_failed,
)

pytestmark = pytest.mark.django_db

_numbers = itertools.count(1)


def make_lead(account, *, window: bool = True, **fields) -> Lead:
    n = next(_numbers)
    last_inbound = timezone.now() - timedelta(hours=1) if window else None
    return Lead.objects.create(
        account=account,
        name=fields.pop("name", f"Lead {n}"),
        phone=fields.pop("phone", f"+9197{n:08d}"),
        last_inbound_at=last_inbound,
        **fields,
    )


def add_template(account, name="order_update", status=Template.Status.APPROVED, language="en_US") -> Template:
    return Template.objects.create(
        account=account,
        name=name,
        language=language,
        status=status,
        components=[{"type": "BODY", "text": "Hi {{1}}, your order {{2}} is on its way."}],
    )


@pytest.fixture
def queued_tasks(monkeypatch) -> list[tuple]:
    """django-q2's async_task, recorded instead of queued."""
    calls: list[tuple] = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kw: calls.append((func, *args)))
    return calls


# --- Sandbox ------------------------------------------------------------------------------------


def test_sandbox_send_end_to_end_walks_sent_delivered_read(
    account, owner, queued_tasks, django_capture_on_commit_callbacks, monkeypatch
):
    lead = make_lead(account)

    with django_capture_on_commit_callbacks(execute=True):
        message = message_send(account=account, lead=lead, text="Hello there", user=owner)

    assert message.provider == Message.Provider.SANDBOX
    assert message.status == Message.Status.SENT
    assert message.wamid.startswith("wamid.sandbox.")
    assert message.sent_at is not None
    assert message.sent_by == owner
    lead.refresh_from_db()
    assert lead.last_outbound_at == message.sent_at
    # The sandbox's stand-in for Meta's status webhooks was queued for the worker.
    assert queued_tasks == [("messaging.tasks.sandbox_walk_statuses", str(message.pk))]

    monkeypatch.setattr(tasks, "SANDBOX_STEP_SECONDS", 0)
    seen = []
    original = webhooks.message_statuses_apply

    def spy(**kwargs):
        seen.extend(update.status for update in kwargs["updates"])
        return original(**kwargs)

    # The walk writes like Meta's status webhooks do.
    monkeypatch.setattr(webhooks, "message_statuses_apply", spy)
    tasks.sandbox_walk_statuses(str(message.pk))

    message.refresh_from_db()
    assert seen == [Message.Status.DELIVERED, Message.Status.READ]
    assert message.status == Message.Status.READ
    assert message.sent_at <= message.delivered_at <= message.read_at


def test_sandbox_template_works_before_anyone_listed_the_templates(account):
    lead = make_lead(account, window=False)

    message = message_send(account=account, lead=lead, template=TemplateRef("hello_world", params=["Acme"]))

    assert message.status == Message.Status.SENT
    assert message.type == Message.Type.TEMPLATE
    assert message.body == "Hello from Acme!"
    assert Template.objects.filter(account=account, is_sandbox=True).count() >= 3


def test_free_text_outside_the_window_is_refused_and_nothing_recorded(account):
    lead = make_lead(account, window=False)

    with pytest.raises(WindowClosed):
        message_send(account=account, lead=lead, text="Hi")

    lead.last_inbound_at = timezone.now() - timedelta(hours=24, seconds=1)
    lead.save()
    with pytest.raises(WindowClosed):
        message_send(account=account, lead=lead, text="Hi")
    assert not Message.objects.exists()


def test_a_template_not_approved_is_refused(account):
    lead = make_lead(account)
    add_template(account, name="promo", status=Template.Status.PENDING)

    with pytest.raises(TemplateUnavailable):
        message_send(account=account, lead=lead, template=TemplateRef("promo"))
    with pytest.raises(TemplateUnavailable):
        message_send(account=account, lead=lead, template=TemplateRef("no_such_template"))
    assert not Message.objects.exists()


def test_html_is_stripped_from_the_text(account):
    lead = make_lead(account)

    message = message_send(account=account, lead=lead, text="<b>Hello</b> <script>x()</script>there")

    assert message.body == "Hello there"
    with pytest.raises(ValidationFailed):
        message_send(account=account, lead=lead, text="<i></i>")


def test_another_accounts_lead_is_refused(account):
    stranger = make_lead(AccountFactory())

    with pytest.raises(ValidationFailed):
        message_send(account=account, lead=stranger, text="Hi")
    assert not Message.objects.exists()


def test_opted_out_lead_is_blocked_with_the_documents_message(account):
    lead = make_lead(account, is_opted_out=True)

    with pytest.raises(OptOutBlocked) as blocked:
        message_send(account=account, lead=lead, text="Hi")

    assert blocked.value.message == "Cannot send message - contact has opted out"
    assert blocked.value.code == "OPT_OUT_BLOCKED"
    assert blocked.value.status_code == 400


# --- Cloud API through the fake Graph server -------------------------------------------------------


def test_cloud_text_posts_metas_exact_json(account, whatsapp_connection, fake_graph):
    lead = make_lead(account, phone="+919812345678")

    message = message_send(account=account, lead=lead, text="Your quote is ready")

    assert fake_graph.sent_messages() == [
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "biz_opaque_callback_data": str(message.pk),
            "to": "919812345678",
            "type": "text",
            "text": {"preview_url": False, "body": "Your quote is ready"},
        }
    ]
    [request] = [r for r in fake_graph.requests if r.method == "POST"]
    assert request.path == "/v21.0/1001/messages"
    assert request.headers["authorization"] == f"Bearer {fake_graph.state.access_token}"
    assert message.provider == Message.Provider.CLOUD
    assert message.status == Message.Status.SENT
    assert message.wamid.startswith("wamid.FAKE")


def test_cloud_template_posts_its_components(account, whatsapp_connection, fake_graph):
    lead = make_lead(account, phone="+919812345679", window=False)
    add_template(account)

    message = message_send(
        account=account, lead=lead, template=TemplateRef("order_update", language="en_US", params=["Asha", 1042])
    )

    assert fake_graph.sent_messages() == [
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "biz_opaque_callback_data": str(message.pk),
            "to": "919812345679",
            "type": "template",
            "template": {
                "name": "order_update",
                "language": {"code": "en_US"},
                "components": [
                    {"type": "body", "parameters": [{"type": "text", "text": "Asha"}, {"type": "text", "text": "1042"}]}
                ],
            },
        }
    ]
    assert message.body == "Hi Asha, your order 1042 is on its way."
    assert message.template_params == ["Asha", 1042]


def test_template_without_params_sends_no_components(account, whatsapp_connection, fake_graph):
    lead = make_lead(account, window=False)
    add_template(account, name="welcome")

    message_send(account=account, lead=lead, template=TemplateRef("welcome"))

    [sent] = fake_graph.sent_messages()
    assert sent["template"] == {"name": "welcome", "language": {"code": "en_US"}}


def test_meta_131047_is_window_closed(account, whatsapp_connection, fake_graph):
    lead = make_lead(account)  # open by our records; Meta knows better
    fake_graph.fail_next(code=131047, status=400)

    message = message_send(account=account, lead=lead, text="Hi")

    assert message.status == Message.Status.FAILED
    assert message.error_code == "131047"
    with pytest.raises(WindowClosed):
        raise_for_failed(message)


def test_meta_131026_is_send_failed_and_the_message_is_stored_failed(account, whatsapp_connection, fake_graph):
    lead = make_lead(account)
    fake_graph.fail_next(code=131026, status=400)

    message = message_send(account=account, lead=lead, text="Hi")

    assert message.status == Message.Status.FAILED
    assert message.error_code == "131026"
    assert "undeliverable" in message.error_title
    assert message.failed_at is not None
    with pytest.raises(SendFailed) as failed:
        raise_for_failed(message)
    assert failed.value.errors == {"messageId": [str(message.pk)]}
    assert len(fake_graph.sent_messages()) == 1  # not retried


def test_meta_190_marks_the_connection_token_invalid(account, whatsapp_connection, fake_graph):
    lead = make_lead(account)
    fake_graph.state.access_token = "a-newer-token"  # ours no longer works

    message = message_send(account=account, lead=lead, text="Hi")

    assert message.status == Message.Status.FAILED
    assert message.error_code == "190"
    whatsapp_connection.refresh_from_db()
    assert whatsapp_connection.status == WhatsAppConnection.Status.TOKEN_INVALID
    assert whatsapp_connection.status_detail


def test_throughput_error_twice_then_ok_sends_one_message_once(account, whatsapp_connection, fake_graph):
    lead = make_lead(account)
    fake_graph.fail_next(code=130429, status=400, times=2)

    message = message_send(account=account, lead=lead, text="Hi")

    assert message.status == Message.Status.SENT
    assert Message.objects.count() == 1
    assert message.attempts == 1
    # Three calls reached Meta: two refused with 130429, one accepted.
    assert len(fake_graph.sent_messages()) == 3
    assert message.wamid.startswith("wamid.FAKE")


def test_retries_exhausted_leave_the_message_queued_for_the_worker(
    account, whatsapp_connection, fake_graph, queued_tasks, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr("messaging.providers.time.sleep", lambda seconds: None)
    lead = make_lead(account)
    fake_graph.fail_next(code=130429, status=400, times=4)

    with django_capture_on_commit_callbacks(execute=True):
        message = message_send(account=account, lead=lead, text="Hi")

    assert message.status == Message.Status.QUEUED
    assert message.claimed_at is None
    assert queued_tasks == [("messaging.tasks.deliver_message", str(message.pk))]

    assert tasks.deliver_message(str(message.pk)) == Message.Status.SENT
    assert len(fake_graph.sent_messages()) == 5
    message.refresh_from_db()
    assert message.status == Message.Status.SENT


def test_deliver_twice_sends_once(account, whatsapp_connection, fake_graph):
    lead = make_lead(account)
    message = message_send(account=account, lead=lead, text="Hi", deliver_now=False)
    assert message.status == Message.Status.QUEUED
    assert fake_graph.sent_messages() == []

    services.message_deliver(message_id=message.pk)
    services.message_deliver(message_id=message.pk)

    assert len(fake_graph.sent_messages()) == 1


# --- Bulk ---------------------------------------------------------------------------------------


def test_bulk_queues_and_counts(account, owner):
    ok = [make_lead(account) for _ in range(3)]
    opted_out = make_lead(account, is_opted_out=True)
    closed = make_lead(account, window=False)
    stranger = make_lead(AccountFactory())

    result = services.message_send_bulk(
        account=account, leads=[*ok, opted_out, closed, stranger], text="Weekend sale", user=owner
    )

    assert (result.queued, result.skipped_opted_out, result.window_closed, result.invalid) == (3, 1, 1, 1)
    queued = Message.objects.filter(status=Message.Status.QUEUED, source=Message.Source.BULK)
    assert sorted(m.lead_id for m in queued) == sorted(lead.pk for lead in ok)
    assert set(result.message_ids) == {m.pk for m in queued}


def test_bulk_template_goes_to_closed_windows_but_never_to_opted_out(account):
    open_lead, closed = make_lead(account), make_lead(account, window=False)
    opted_out = make_lead(account, is_opted_out=True, window=False)

    result = services.message_send_bulk(
        account=account, leads=[open_lead, closed, opted_out], template=TemplateRef("hello_world", params=["Acme"])
    )

    assert (result.queued, result.skipped_opted_out, result.window_closed) == (2, 1, 0)
    assert not Message.objects.filter(lead=opted_out).exists()


def test_bulk_with_an_unapproved_template_queues_nothing(account):
    add_template(account, name="promo", status=Template.Status.REJECTED)

    with pytest.raises(TemplateUnavailable):
        services.message_send_bulk(account=account, leads=[make_lead(account)], template=TemplateRef("promo"))
    assert not Message.objects.exists()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
