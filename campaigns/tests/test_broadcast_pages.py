"""The broadcast pages of the dashboard through Django's test client: the list (name,
status, recipients, progress, created; paginated, constant queries), composing a
broadcast (text or template, to a filter or to ticked leads, now, scheduled in the
account's zone, or as a draft; "Preview" and the live recipient-count fragment with
the opted-out count and a sample lead's rendering), the service's validation errors
as form errors with nothing created, the detail with its totals (constant queries,
htmx polling while live), sending a draft, cancel with a confirmation, tenancy and
the agents' rules of the API (their own broadcasts, to the leads they may see)."""

import re
import zoneinfo
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Broadcast
from campaigns.services import broadcasts as services
from campaigns.tests.helpers import approved_template
from leads.tests.factories import LeadFactory, TagFactory
from messaging.models import Message, Template
from tests.pages import page_text

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]


@pytest.fixture(autouse=True)
def task_queue(monkeypatch) -> list:
    """django-q2 tasks recorded, not run (no worker here)."""
    queued: list = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kwargs: queued.append((func, args)))
    return queued


def open_lead(account, **fields):
    """A lead who wrote an hour ago: a text reaches them."""
    fields.setdefault("last_inbound_at", timezone.now() - timedelta(hours=1))
    return LeadFactory(account=account, **fields)


def compose(**fields) -> dict:
    return {
        "name": "Diwali offer",
        "message": "Hi {{first_name}}, our showroom opens at 10.",
        "template": "",
        "template_params": "",
        "scheduled_at": "",
        "action": "send",
    } | fields


def make_broadcast(user, **kwargs) -> Broadcast:
    kwargs.setdefault("text", "Hello {{name}}")
    kwargs.setdefault("filters", {})
    return services.broadcast_create(user=user, **kwargs)


# --- Compose ----------------------------------------------------------------------------


def test_compose_page_renders_with_labelled_fields(owner_web, account):
    approved_template(account)
    Template.objects.create(account=account, name="pending_one", status=Template.Status.PENDING, is_sandbox=True)
    TagFactory(account=account, name="VIP")
    response = owner_web.get("/broadcasts/new")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'value="offer|en_US"' in body and "pending_one" not in body  # approved templates only
    assert 'type="datetime-local"' in body
    assert 'hx-get="/broadcasts/audience"' in body
    for name in ("Name", "Message", "Or an approved template", "Template parameters", "Send at", "Source"):
        assert f">{name}" in body
    assert ">VIP</option>" in body
    assert "Send now" in body and "Schedule" in body and "Save as draft" in body and "Preview" in body


def test_send_now_to_a_filter(owner_web, owner, account, task_queue, django_capture_on_commit_callbacks):
    hot = [open_lead(account, name=f"Hot {i}", segment="hot") for i in range(3)]
    open_lead(account, name="Cold one", segment="cold")
    open_lead(account, name="Opted Out", segment="hot", is_opted_out=True)
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_web.post("/broadcasts/new", compose(**{"f-segment": ["hot"]}))
    broadcast = Broadcast.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/broadcasts/{broadcast.pk}"
    assert (broadcast.status, broadcast.recipients, broadcast.skipped_opted_out) == ("sending", 3, 1)
    assert broadcast.audience == {"filter": {"segment": ["hot"]}}
    assert broadcast.created_by == owner
    bodies = sorted(Message.objects.filter(broadcast=broadcast).values_list("body", flat=True))
    assert bodies == ["Hi Hot, our showroom opens at 10."] * len(hot)
    assert any(func == services.SEND_BATCH_TASK for func, _ in task_queue)
    detail = owner_web.get(response["Location"])
    text = page_text(detail)
    assert "Broadcast started: 3 message(s) queued." in text
    assert "Sending" in text and "Recipients 3" in text
    assert "skipped: opted out" in text
    assert 'hx-trigger="every 2s"' in detail.content.decode()  # polls while sending


def test_schedule_in_the_accounts_time_zone(owner_web, account, task_queue):
    account.time_zone = "Asia/Kolkata"
    account.save(update_fields=["time_zone"])
    zone = zoneinfo.ZoneInfo("Asia/Kolkata")
    open_lead(account)
    when = (timezone.now() + timedelta(days=2)).astimezone(zone).replace(hour=9, minute=30, second=0, microsecond=0)
    local = when.strftime("%Y-%m-%dT%H:%M")
    response = owner_web.post("/broadcasts/new", compose(action="schedule", scheduled_at=local))
    assert response.status_code == 302, page_text(response)
    broadcast = Broadcast.objects.get()
    assert broadcast.status == "scheduled"
    assert broadcast.scheduled_at.astimezone(zone).strftime("%Y-%m-%dT%H:%M") == local  # 09:30 in Kolkata
    assert not Message.objects.exists()
    detail = owner_web.get(response["Location"])
    assert f"{when.day} {when:%b %Y, %H:%M}" in page_text(detail)
    assert 'hx-trigger="every 2s"' in detail.content.decode()


def test_schedule_needs_a_future_time(owner_web, account):
    open_lead(account)
    for value, shown in (("", "Choose when to send it"), ("2020-01-01T09:00", "This time has passed")):
        response = owner_web.post("/broadcasts/new", compose(action="schedule", scheduled_at=value))
        assert response.status_code == 400
        assert shown in page_text(response)
    assert not Broadcast.objects.exists()


def test_save_as_draft_then_send_it(owner_web, account, task_queue):
    open_lead(account)
    response = owner_web.post("/broadcasts/new", compose(action="draft"))
    broadcast = Broadcast.objects.get()
    assert broadcast.status == "draft" and not Message.objects.exists()
    detail = owner_web.get(response["Location"])
    text = page_text(detail)
    assert "Broadcast saved as a draft." in text and "A draft: nothing is sent" in text
    assert 'hx-trigger="every' not in detail.content.decode()  # a draft doesn't poll
    sent = owner_web.post(f"/broadcasts/{broadcast.pk}/send")
    assert sent.status_code == 302
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.recipients) == ("sending", 1)


def test_a_template_broadcast_with_parameters(owner_web, account):
    approved_template(account)
    open_lead(account, name="Asha Rao", last_inbound_at=None)  # a template reaches closed windows too
    data = compose(message="", template="offer|en_US", template_params="{{first_name}}\n20%")
    response = owner_web.post("/broadcasts/new", data)
    assert response.status_code == 302, page_text(response)
    broadcast = Broadcast.objects.get()
    assert (broadcast.template_name, broadcast.template_params) == ("offer", ["{{first_name}}", "20%"])
    assert Message.objects.get().body == "Hi Asha, 20% off this week."


def test_to_the_leads_ticked_on_the_leads_list(owner_web, account):
    chosen = [open_lead(account, name=n) for n in ("Anil", "Bela")]
    open_lead(account, name="Not chosen")
    ids = ",".join(str(lead.pk) for lead in chosen)
    form = owner_web.get(f"/broadcasts/new?ids={ids}")
    body = form.content.decode()
    assert "The 2 selected leads" in body
    assert all(f'name="ids" value="{lead.pk}"' in body for lead in chosen)
    data = compose(ids=[str(lead.pk) for lead in chosen], audience="selected")
    response = owner_web.post("/broadcasts/new", data)
    assert response.status_code == 302, page_text(response)
    broadcast = Broadcast.objects.get()
    assert sorted(broadcast.audience["leadIds"]) == sorted(str(lead.pk) for lead in chosen)
    assert broadcast.recipients == 2
    assert "2 selected leads" in page_text(owner_web.get(response["Location"]))


def test_leads_posted_from_the_leads_list_open_the_compose_page(owner_web, account):
    chosen = [open_lead(account) for _ in range(3)]
    chosen[2].is_opted_out = True
    chosen[2].save(update_fields=["is_opted_out"])
    data = {"ids": [str(lead.pk) for lead in chosen] + ["not-a-uuid"], "action": "broadcast", "next": "/leads"}
    response = owner_web.post("/broadcasts/new", data)
    assert response.status_code == 200
    text = page_text(response)
    assert "The 3 selected leads" in text
    assert "2 recipients of 3 matching leads; 1 opted out (skipped)." in text
    assert "Left out 1 value(s) that are not lead ids." in text
    assert not Broadcast.objects.exists()


def test_switching_from_the_selection_to_a_filter(owner_web, account):
    chosen = open_lead(account, segment="cold")
    open_lead(account, segment="hot")
    data = compose(ids=[str(chosen.pk)], audience="filter", **{"f-segment": ["hot"]})
    assert owner_web.post("/broadcasts/new", data).status_code == 302
    assert Broadcast.objects.get().audience == {"filter": {"segment": ["hot"]}}


@pytest.mark.parametrize(
    ("fields", "shown"),
    [
        ({"message": ""}, "Give either `message` or `template`."),
        ({"message": "Hi {{nickname}}"}, "Unknown variable {{nickname}}"),
        ({"template": "offer|en_US"}, "Give either `message` or `template`."),
        ({"message": "", "template": "offer|en_US", "template_params": "only one"}, "takes 2 parameter(s); 1 given"),
        ({"f-segment": ["cold"]}, "The audience has no lead that can be messaged"),
        ({"f-segment": ["warm"]}, "The audience has no lead that can be messaged (1 opted out)"),
        ({"f-segment": ["lukewarm"]}, "Select a valid choice. lukewarm"),
        ({"message": "x" * 5000}, "at most 4096 characters"),
        ({"template": "ghost|en_US"}, "Select a valid choice."),
    ],
)
def test_mistakes_are_form_errors_and_nothing_is_created(owner_web, account, task_queue, fields, shown):
    approved_template(account)
    open_lead(account, segment="hot")
    open_lead(account, segment="warm", is_opted_out=True)
    response = owner_web.post("/broadcasts/new", compose(**fields))
    assert response.status_code == 400
    text = page_text(response)
    assert "Please correct the errors below. Nothing was sent." in text
    assert shown in text
    assert not Broadcast.objects.exists() and not Message.objects.exists() and not task_queue
    assert 'value="Diwali offer"' in response.content.decode()  # the form keeps what was typed


def test_a_lead_id_the_user_cannot_see_is_an_error(owner_web, account, outsider):
    theirs = LeadFactory(account=outsider.account)
    response = owner_web.post("/broadcasts/new", compose(ids=[str(theirs.pk)], audience="selected"))
    assert response.status_code == 400
    assert f"No lead you can see with id {theirs.pk}" in page_text(response)
    assert not Broadcast.objects.exists()


def test_preview_shows_the_counts_and_a_sample_lead(owner_web, account):
    open_lead(account, name="Asha Rao", segment="hot")
    open_lead(account, name="Zed Old", segment="hot", last_inbound_at=None)
    open_lead(account, name="Opted Out", segment="hot", is_opted_out=True)
    response = owner_web.post("/broadcasts/new", compose(action="preview", **{"f-segment": ["hot"]}))
    assert response.status_code == 200
    text = page_text(response)
    assert "2 recipients of 3 matching leads; 1 opted out (skipped)." in text
    assert "1 of the recipients haven't written in the last 24 hours" in text
    assert "As Asha Rao would get it: Hi Asha, our showroom opens at 10." in text
    assert not Broadcast.objects.exists()


def test_the_live_count_fragment(owner_web, account):
    vip = TagFactory(account=account, name="VIP")
    for _ in range(3):
        open_lead(account, tags=[vip], source="Expo")
    open_lead(account, tags=[vip], source="Expo", is_opted_out=True)
    open_lead(account, source="Web")
    response = owner_web.get(
        "/broadcasts/audience",
        {"f-tags": [str(vip.pk)], "f-source": "expo", "message": "Hi {{name}}"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body  # a fragment
    text = page_text(response)
    assert "3 recipients of 4 matching leads; 1 opted out (skipped)." in text
    assert 'data-testid="opted-out-count">1<' in body
    everyone = page_text(owner_web.get("/broadcasts/audience"))
    assert "4 recipients of 5 matching leads; 1 opted out" in everyone


def test_the_live_count_of_an_unknown_assignee_says_so(owner_web, account):
    response = owner_web.get("/broadcasts/audience", {"f-assignedTo": "nobody"})
    assert "Check the filter" in page_text(response)


# --- List -------------------------------------------------------------------------------


def test_list_shows_name_status_recipients_progress_created(owner_web, owner, account):
    open_lead(account)
    open_lead(account)
    sending = make_broadcast(owner, name="Sending one")
    first = Message.objects.filter(broadcast=sending).order_by("pk").first()
    Message.objects.filter(pk=first.pk).update(status="delivered")
    make_broadcast(owner, name="Draft one", draft=True)
    response = owner_web.get("/broadcasts")
    assert response.status_code == 200
    text = page_text(response)
    assert "Draft one by Olivia Owner Draft" in text
    assert "Sending one" in text and "Sending 2" in text and "1/2" in text
    assert 'value="1" max="2"' in response.content.decode()
    drafts = page_text(owner_web.get("/broadcasts?status=draft"))
    assert "Draft one" in drafts and "Sending one" not in drafts


def test_empty_list_says_what_to_do(owner_web):
    text = page_text(owner_web.get("/broadcasts"))
    assert "No broadcasts" in text and "Compose a broadcast" in text


def test_list_is_paginated(owner_web, owner, account):
    open_lead(account)
    for i in range(27):
        make_broadcast(owner, name=f"B{i:02d}", draft=True)
    first = page_text(owner_web.get("/broadcasts"))
    assert "Page 1 of 2" in first and "B26" in first and "B01" not in first
    second = page_text(owner_web.get("/broadcasts?page=2"))
    assert "B01" in second and "B00" in second


def _queries(client, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # the first request of a session writes to it
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_list_queries_do_not_grow_with_broadcasts(owner_web, owner, account, django_assert_num_queries):
    for _ in range(3):
        open_lead(account)
    for i in range(3):
        make_broadcast(owner, name=f"A{i}")
    few = _queries(owner_web, "/broadcasts")
    for i in range(22):
        make_broadcast(owner, name=f"B{i}")
    with django_assert_num_queries(few):
        owner_web.get("/broadcasts")


def test_detail_queries_do_not_grow_with_messages(owner_web, owner, account, django_assert_num_queries):
    for _ in range(3):
        open_lead(account)
    small = make_broadcast(owner)
    few = _queries(owner_web, f"/broadcasts/{small.pk}")
    for _ in range(27):
        open_lead(account)
    large = make_broadcast(owner)
    assert large.recipients == 30
    with django_assert_num_queries(few):
        owner_web.get(f"/broadcasts/{large.pk}")


# --- Detail -----------------------------------------------------------------------------


def test_detail_shows_totals_per_status_and_skips(owner_web, owner, account):
    leads = [open_lead(account) for _ in range(4)]
    open_lead(account, last_inbound_at=None)
    open_lead(account, is_opted_out=True)
    broadcast = make_broadcast(owner)
    messages = list(Message.objects.filter(broadcast=broadcast).order_by("pk"))
    Message.objects.filter(pk=messages[0].pk).update(status="delivered")
    Message.objects.filter(pk=messages[1].pk).update(status="read")
    Message.objects.filter(pk=messages[2].pk).update(status="failed", error_code="131026")
    assert len(leads) == len(messages)
    response = owner_web.get(f"/broadcasts/{broadcast.pk}")
    body = response.content.decode()
    text = page_text(response)
    for key, count in (("queued", 1), ("sent", 0), ("delivered", 1), ("read", 1), ("failed", 1)):
        assert re.search(rf'data-testid="total-{key}">.*?<progress value="{count}" max="4"', body, flags=re.S), key
    assert re.search(r'data-testid="skipped-opted-out">1<', body)
    assert re.search(r'data-testid="skipped-window-closed">1<', body)
    assert "Started" in text and "Finished Not yet" in text


def test_detail_describes_the_filter_in_words(owner_web, owner, agent, account):
    vip = TagFactory(account=account, name="VIP")
    open_lead(account, tags=[vip], segment="hot", status="qualified", source="Expo", assigned_to=agent)
    broadcast = make_broadcast(
        owner,
        filters={
            "segment": ["hot"],
            "status": ["qualified"],
            "tags": ["vip"],
            "source": "Expo",
            "assignedTo": str(agent.pk),
        },
    )
    text = page_text(owner_web.get(f"/broadcasts/{broadcast.pk}"))
    assert (
        "Audience Leads with status Qualified; segment Hot; tagged VIP; source Expo; assigned to Aditya Agent" in text
    )


def test_the_polled_fragment_stops_polling_when_finished(owner_web, owner, account):
    open_lead(account)
    broadcast = make_broadcast(owner)
    live = owner_web.get(f"/broadcasts/{broadcast.pk}", headers={"HX-Request": "true"})
    assert live.content.decode().lstrip().startswith('<section id="broadcast-live"')
    assert 'hx-trigger="every 2s"' in live.content.decode()
    Message.objects.filter(broadcast=broadcast).update(status="sent", wamid="wamid.1")
    services.broadcast_complete_if_done(broadcast_id=broadcast.pk)
    done = owner_web.get(f"/broadcasts/{broadcast.pk}", headers={"HX-Request": "true"})
    assert "Completed" in page_text(done)
    assert "hx-trigger" not in done.content.decode()


def test_another_accounts_broadcast_is_404(owner_web, outsider):
    LeadFactory(account=outsider.account, last_inbound_at=timezone.now())
    theirs = make_broadcast(outsider)
    for url in (f"/broadcasts/{theirs.pk}", f"/broadcasts/{theirs.pk}/cancel"):
        assert owner_web.get(url).status_code == 404
    assert owner_web.post(f"/broadcasts/{theirs.pk}/cancel").status_code == 404
    assert owner_web.post(f"/broadcasts/{theirs.pk}/send").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "sending"


# --- Cancel -----------------------------------------------------------------------------


def test_cancel_asks_first_then_drops_the_queued_messages(owner_web, owner, account):
    for _ in range(3):
        open_lead(account)
    broadcast = make_broadcast(owner, name="Oops")
    detail = owner_web.get(f"/broadcasts/{broadcast.pk}")
    assert f'href="/broadcasts/{broadcast.pk}/cancel"' in detail.content.decode()
    confirm = owner_web.get(f"/broadcasts/{broadcast.pk}/cancel")
    assert confirm.status_code == 200
    assert "Cancel “Oops”?" in page_text(confirm) and "3 still queued, which will be dropped" in page_text(confirm)
    broadcast.refresh_from_db()
    assert broadcast.status == "sending"  # the GET changed nothing
    response = owner_web.post(f"/broadcasts/{broadcast.pk}/cancel")
    assert response.status_code == 302
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.cancelled_unsent) == ("cancelled", 3)
    assert not Message.objects.filter(broadcast=broadcast).exists()
    text = page_text(owner_web.get(response["Location"]))
    assert "Broadcast cancelled. 3 queued messages dropped." in text
    assert "Cancel broadcast…" not in text


def test_a_completed_broadcast_cannot_be_cancelled(owner_web, owner, account):
    open_lead(account)
    broadcast = make_broadcast(owner)
    Message.objects.filter(broadcast=broadcast).update(status="sent", wamid="wamid.x")
    services.broadcast_complete_if_done(broadcast_id=broadcast.pk)
    response = owner_web.post(f"/broadcasts/{broadcast.pk}/cancel", follow=True)
    assert "A completed broadcast can't be cancelled." in page_text(response)
    broadcast.refresh_from_db()
    assert broadcast.status == "completed"


# --- Agents: as the API allows them ------------------------------------------------------


def test_agents_broadcast_to_their_leads_and_see_only_their_own(agent_web, agent, owner, account):
    mine = open_lead(account, assigned_to=agent, segment="hot")
    open_lead(account, segment="hot")  # unassigned: agents see it too
    open_lead(account, assigned_to=owner, segment="hot")  # a colleague's: not theirs
    theirs = make_broadcast(owner, name="Owner's broadcast")
    assert agent_web.get(f"/broadcasts/{theirs.pk}").status_code == 404
    assert "Owner's broadcast" not in page_text(agent_web.get("/broadcasts"))
    count = page_text(agent_web.get("/broadcasts/audience", {"f-segment": ["hot"]}))
    assert "2 recipients of 2 matching leads" in count
    form = agent_web.get("/broadcasts/new").content.decode()
    assert f'value="{owner.pk}"' not in form  # no colleagues among the assignees
    response = agent_web.post("/broadcasts/new", compose(name="Agent's", **{"f-segment": ["hot"]}))
    assert response.status_code == 302
    broadcast = Broadcast.objects.get(name="Agent's")
    assert (broadcast.created_by, broadcast.recipients) == (agent, 2)
    assert mine.pk in set(Message.objects.filter(broadcast=broadcast).values_list("lead_id", flat=True))
    assert "Agent's" in page_text(agent_web.get("/broadcasts"))
    assert agent_web.post(f"/broadcasts/{broadcast.pk}/cancel").status_code == 302


def test_the_owner_sees_and_manages_the_agents_broadcast(owner_web, agent, account):
    open_lead(account)
    broadcast = make_broadcast(agent, name="By the agent", draft=True)
    text = page_text(owner_web.get("/broadcasts"))
    assert "By the agent" in text and "by Aditya Agent" in text
    assert owner_web.post(f"/broadcasts/{broadcast.pk}/cancel").status_code == 302
    broadcast.refresh_from_db()
    assert broadcast.status == "cancelled"


def test_pages_need_a_login(client):
    response = client.get("/broadcasts")
    assert response.status_code == 302 and "/login" in response["Location"]


def test_navigation_shows_broadcasts(owner_web, agent_web):
    assert 'href="/broadcasts"' in owner_web.get("/broadcasts").content.decode()
    assert 'href="/broadcasts"' in agent_web.get("/broadcasts").content.decode()


def test_the_fragment_previews_a_template_for_a_sample_lead(owner_web, account):
    approved_template(account)
    open_lead(account, name="Asha Rao")
    params = {"template": "offer|en_US", "template_params": "{{first_name}}\n20%"}
    text = page_text(owner_web.get("/broadcasts/audience", params))
    assert "As Asha Rao would get it: Hi Asha, 20% off this week." in text
