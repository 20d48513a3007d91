"""The hard rule: no path ever sends to an opted-out lead.

Every send path of the messaging routes — POST /api/messages/send, /api/whatsapp/send,
/api/whatsapp/send-bulk, HeyDoc's /api/send_message, the services message_send and
message_deliver called directly, the worker's task, and a lead who opts out after a
bulk message was queued but before the worker delivers it — against an opted-out
lead, with a real Cloud API connection: ZERO requests reach the fake Graph server.
Single sends answer the document's exact OPT_OUT_BLOCKED body; bulk sends count it."""

from datetime import timedelta

import pytest
from django.utils import timezone

from leads.models import Lead
from leads.services import lead_opt_out
from messaging import services, tasks
from messaging.models import Message, Template
from messaging.services import OptOutBlocked, TemplateRef

pytestmark = pytest.mark.django_db

OPT_OUT_BODY = {
    "success": False,
    "message": "Cannot send message - contact has opted out",
    "error": "OPT_OUT_BLOCKED",
}
PHONE = "+919899900001"


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "100000/15m"}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def cloud(whatsapp_connection, account):
    """A real Cloud API connection (to the fake Graph server) and an approved template:
    if anything were sent, the fake server would see it."""
    Template.objects.create(
        account=account,
        name="order_update",
        language="en_US",
        status=Template.Status.APPROVED,
        components=[{"type": "BODY", "text": "Order {{1}} shipped."}],
    )
    return whatsapp_connection


def _lead(account, phone: str, *, opted_out: bool) -> Lead:
    # The window is open: opt-out must be the reason nothing is sent.
    return Lead.objects.create(
        account=account,
        name="Contact",
        phone=phone,
        is_opted_out=opted_out,
        opted_out_at=timezone.now() if opted_out else None,
        last_inbound_at=timezone.now() - timedelta(hours=1),
    )


@pytest.fixture
def opted_out(account) -> Lead:
    return _lead(account, PHONE, opted_out=True)


@pytest.fixture
def reachable(account) -> Lead:
    return _lead(account, "+919899900002", opted_out=False)


@pytest.fixture
def queued_tasks(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kw: calls.append((func, *args)))
    return calls


def run_queued(queued_tasks: list[tuple]) -> None:
    """Runs the recorded django-q2 tasks, as a worker would."""
    for func, *args in queued_tasks:
        assert func == "messaging.tasks.deliver_message"
        tasks.deliver_message(*args)


TEXT = {"message": "Hello"}
TEMPLATE = {"template": {"name": "order_update", "params": ["A-1"]}}


# --- Single sends through the API ---------------------------------------------------------------

SINGLE_PATHS = {
    "messages/send": ("/api/messages/send", lambda lead: {"leadId": str(lead.pk)}),
    "whatsapp/send by leadId": ("/api/whatsapp/send", lambda lead: {"leadId": str(lead.pk)}),
    "whatsapp/send by phone": ("/api/whatsapp/send", lambda lead: {"phone": lead.phone}),
    "HeyDoc send_message": ("/api/send_message", lambda lead: {"phone_number": lead.phone.lstrip("+")}),
}


@pytest.mark.parametrize("content", [TEXT, TEMPLATE], ids=["text", "template"])
@pytest.mark.parametrize("path", sorted(SINGLE_PATHS))
def test_single_send_paths_block_and_send_nothing(
    owner_client, opted_out, fake_graph, queued_tasks, django_capture_on_commit_callbacks, path, content
):
    url, target = SINGLE_PATHS[path]

    with django_capture_on_commit_callbacks(execute=True):
        r = owner_client.post(url, {**target(opted_out), **content}, format="json")

    assert r.status_code == 400, r.content
    assert r.json() == OPT_OUT_BODY
    assert not Message.objects.exists()
    assert queued_tasks == []
    assert fake_graph.sent_messages() == []


@pytest.mark.parametrize("path", sorted(SINGLE_PATHS))
def test_single_send_paths_reach_meta_for_a_lead_who_did_not_opt_out(owner_client, reachable, fake_graph, path):
    """The control: the same request for a reachable lead does reach the fake server."""
    url, target = SINGLE_PATHS[path]

    r = owner_client.post(url, {**target(reachable), **TEXT}, format="json")

    assert r.status_code in (200, 201), r.content
    assert [m["to"] for m in fake_graph.sent_messages()] == [reachable.phone.lstrip("+")]


# --- Bulk ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [TEXT, TEMPLATE], ids=["text", "template"])
@pytest.mark.parametrize("audience", ["leadIds", "filter"])
def test_bulk_skips_and_counts_opted_out_leads(
    owner_client,
    opted_out,
    reachable,
    fake_graph,
    queued_tasks,
    django_capture_on_commit_callbacks,
    audience,
    content,
):
    who = {"leadIds": [str(opted_out.pk), str(reachable.pk)]} if audience == "leadIds" else {"filter": {}}

    with django_capture_on_commit_callbacks(execute=True):
        r = owner_client.post("/api/whatsapp/send-bulk", {**who, **content}, format="json")
    run_queued(queued_tasks)

    assert r.status_code == 200, r.content
    assert r.json()["data"]["skipped_opted_out"] == 1
    assert r.json()["data"]["queued"] == 1
    assert not Message.objects.filter(lead=opted_out).exists()
    assert [m["to"] for m in fake_graph.sent_messages()] == [reachable.phone.lstrip("+")]


def test_bulk_of_only_opted_out_leads_sends_nothing(owner_client, opted_out, fake_graph, queued_tasks):
    r = owner_client.post("/api/whatsapp/send-bulk", {"filter": {"isOptedOut": True}, **TEMPLATE}, format="json")

    assert r.json()["data"] == {"requested": 1, "queued": 0, "skipped_opted_out": 1, "invalid": 0, "windowClosed": 0}
    assert queued_tasks == []
    assert fake_graph.sent_messages() == []


def test_opt_out_after_a_bulk_message_was_queued_but_before_the_worker_delivers_it(
    owner_client, reachable, fake_graph, queued_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        r = owner_client.post("/api/whatsapp/send-bulk", {"leadIds": [str(reachable.pk)], **TEXT}, format="json")
    assert r.json()["data"]["queued"] == 1
    assert len(queued_tasks) == 1

    lead_opt_out(lead=reachable, reason="STOP")  # e.g. the contact wrote STOP meanwhile
    run_queued(queued_tasks)
    run_queued(queued_tasks)  # delivered twice by the broker: still nothing

    assert fake_graph.sent_messages() == []
    message = Message.objects.get()
    assert message.status == Message.Status.FAILED
    assert message.error_code == "OPT_OUT"
    assert message.wamid is None


# --- The services, called directly --------------------------------------------------------------


@pytest.mark.parametrize("deliver_now", [True, False])
@pytest.mark.parametrize(
    "content", [{"text": "Hello"}, {"template": TemplateRef("order_update", params=["A-1"])}], ids=["text", "template"]
)
def test_message_send_refuses(account, opted_out, fake_graph, queued_tasks, deliver_now, content):
    with pytest.raises(OptOutBlocked) as blocked:
        services.message_send(account=account, lead=opted_out, deliver_now=deliver_now, **content)

    assert (blocked.value.status_code, blocked.value.code, blocked.value.message) == (
        400,
        OPT_OUT_BODY["error"],
        OPT_OUT_BODY["message"],
    )
    assert not Message.objects.exists()
    assert queued_tasks == []
    assert fake_graph.sent_messages() == []


def test_message_send_reads_the_opt_out_fresh_from_the_database(account, reachable, fake_graph):
    """A stale Lead object in memory must not let a send through."""
    stale = Lead.objects.get(pk=reachable.pk)
    lead_opt_out(lead=reachable, reason="STOP")

    with pytest.raises(OptOutBlocked):
        services.message_send(account=account, lead=stale, text="Hello")
    assert fake_graph.sent_messages() == []


@pytest.mark.parametrize("deliver", ["service", "task"])
def test_message_deliver_refuses_a_message_queued_before_the_opt_out(account, reachable, fake_graph, deliver):
    message = services.message_send(account=account, lead=reachable, text="Hello", deliver_now=False)
    lead_opt_out(lead=reachable, reason="Asked by phone")

    if deliver == "service":
        message = services.message_deliver(message_id=message.pk)
    else:
        tasks.deliver_message(str(message.pk))
        message.refresh_from_db()

    assert message.status == Message.Status.FAILED
    assert message.error_code == "OPT_OUT"
    assert fake_graph.sent_messages() == []
    with pytest.raises(OptOutBlocked):
        services.raise_for_failed(message)


def test_message_send_bulk_service_skips(account, opted_out, fake_graph, queued_tasks):
    result = services.message_send_bulk(account=account, leads=[opted_out], text="Hello")

    assert (result.queued, result.skipped_opted_out) == (0, 1)
    assert queued_tasks == []
    assert fake_graph.sent_messages() == []


def test_bulk_service_skips_a_lead_who_opted_out_after_it_was_loaded(account, reachable, fake_graph, queued_tasks):
    loaded = list(Lead.objects.filter(pk=reachable.pk))  # the bulk audience, loaded before the opt-out
    lead_opt_out(lead=reachable, reason="STOP")

    result = services.message_send_bulk(account=account, leads=loaded, text="Hello")

    assert (result.queued, result.skipped_opted_out) == (0, 1)
    assert not Message.objects.exists()
    assert fake_graph.sent_messages() == []
