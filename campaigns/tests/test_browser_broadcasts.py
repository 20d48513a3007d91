"""The broadcast pages in a real browser (headless Chromium against the live server):
the owner composes a text broadcast to a filter, watches the live recipient count,
sends it now, and sees the detail page reach "Completed" by itself (htmx polling).

The live server runs in this process, and no django-q2 worker runs here: the tasks the
broadcast hands to django-q2 (its delivery batch, then the sandbox's status walk) are
recorded and run by the test, as a worker would, while the page polls."""

import importlib
import re
import threading
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from campaigns.models import Broadcast
from leads.tests.factories import LeadFactory
from messaging.models import Message

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Longer than the page's 2-second poll, with room for a loaded machine.
LIVE_UPDATE_MS = 12_000


class Worker:
    """Stands in for django-q2: records async_task calls (from the server's thread) and
    runs them on demand in the test's thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.queued: list = []

    def async_task(self, func, *args, **kwargs):
        with self.lock:
            self.queued.append((func, args))

    def run_all(self) -> list[str]:
        ran = []
        while True:
            with self.lock:
                if not self.queued:
                    return ran
                func, args = self.queued.pop(0)
            module, name = func.rsplit(".", 1)
            getattr(importlib.import_module(module), name)(*args)
            ran.append(func)


@pytest.fixture
def worker(monkeypatch) -> Worker:
    fake = Worker()
    monkeypatch.setattr("django_q.tasks.async_task", fake.async_task)
    monkeypatch.setattr("messaging.tasks.SANDBOX_STEP_SECONDS", 0)
    return fake


def test_compose_send_and_watch_it_complete(owner_page, account, owner, worker):
    recent = timezone.now() - timedelta(hours=1)
    hot = [LeadFactory(account=account, name=n, segment="hot", last_inbound_at=recent) for n in ("Asha Rao", "Bilal")]
    LeadFactory(account=account, name="Opted Out", segment="hot", is_opted_out=True, last_inbound_at=recent)
    LeadFactory(account=account, name="Cold Chitra", segment="cold", last_inbound_at=recent)
    page = owner_page
    counted: list[str] = []
    page.on("request", lambda request: "/broadcasts/audience" in request.url and counted.append(request.url))
    page.goto("/broadcasts")
    expect(page.get_by_test_id("empty-state")).to_contain_text("No broadcasts")
    page.get_by_role("link", name="New broadcast").click()
    expect(page).to_have_url(re.compile(r"/broadcasts/new$"))

    page.get_by_label("Name", exact=True).fill("Showroom hours")
    page.get_by_label("Message", exact=True).fill("Hi {{first_name}}, the showroom opens at 10 tomorrow.")
    page.get_by_label("Hot", exact=True).check()
    count = page.get_by_test_id("audience-count")
    # The live count (an htmx fragment), with the sample lead's rendering.
    expect(count.get_by_test_id("recipient-count")).to_have_text("2")
    expect(count.get_by_test_id("opted-out-count")).to_have_text("1")
    expect(count.get_by_test_id("sample-preview")).to_have_text("Hi Asha, the showroom opens at 10 tomorrow.")
    assert "f-segment=hot" in counted[-1]
    assert not any("csrfmiddlewaretoken" in url for url in counted)  # the token stays out of URLs

    page.get_by_role("button", name="Send now").click()
    expect(page).to_have_url(re.compile(r"/broadcasts/[0-9a-f-]{36}$"))
    broadcast = Broadcast.objects.get()
    expect(page.get_by_role("status")).to_contain_text("Broadcast started: 2 message(s) queued.")
    expect(page.get_by_test_id("broadcast-status")).to_have_text("Sending")
    expect(page.get_by_test_id("recipients")).to_have_text("2")
    expect(page.get_by_test_id("total-queued")).to_contain_text("2")
    expect(page.get_by_test_id("skipped-opted-out")).to_have_text("1")
    expect(page.get_by_test_id("audience")).to_have_text("Leads with segment Hot")
    expect(page.get_by_role("link", name="Cancel broadcast…")).to_be_visible()
    page.evaluate("window.__notReloaded = true")

    ran = worker.run_all()  # the delivery batch, then the sandbox's status walk
    assert "campaigns.tasks.broadcasts.send_batch" in ran
    broadcast.refresh_from_db()
    assert broadcast.status == "completed"
    expect(page.get_by_test_id("broadcast-status")).to_have_text("Completed", timeout=LIVE_UPDATE_MS)
    expect(page.get_by_test_id("total-queued")).to_contain_text("0")
    expect(page.get_by_role("link", name="Cancel broadcast…")).to_have_count(0)  # the actions follow too
    assert page.evaluate("window.__notReloaded === true")  # updated in place by the poll
    assert set(Message.objects.filter(broadcast=broadcast).values_list("lead_id", flat=True)) == {h.pk for h in hot}
    assert set(Message.objects.filter(broadcast=broadcast).values_list("status", flat=True)) == {"read"}

    page.reload()
    expect(page.get_by_test_id("total-read")).to_contain_text("2")
    page.get_by_role("link", name="Broadcasts").first.click()
    row = page.locator(f"tr[data-broadcast-id='{broadcast.pk}']")
    expect(row).to_contain_text("Showroom hours")
    expect(row).to_contain_text("Completed")
    expect(row).to_contain_text("2/2")
    assert page.console_errors == []
