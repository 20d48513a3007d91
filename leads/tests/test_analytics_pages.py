"""The analytics page through Django's test client: the numbers of
leads.selectors.lead_analytics (as GET /api/leads/analytics) drawn as bars in tables,
messages sent/delivered/read per day (messaging.selectors.message_status_per_day),
the date range (default the last 30 days, errors on the form, never a 500), an
agent's scope, and a constant number of queries."""

import re
import zoneinfo
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from leads.models import Lead
from messaging.models import Message
from messaging.selectors import message_status_per_day
from tests.pages import page_text

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]

URL = "/analytics"
_phones = iter(range(10_000_000))


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "100000/15m"}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make_lead(account, **fields) -> Lead:
    n = next(_phones)
    return Lead.objects.create(account=account, name=f"Lead {n}", phone=f"+9197{n:08d}", **fields)


def send(lead: Lead, status: str, at: datetime) -> Message:
    return Message.objects.create(
        account_id=lead.account_id, lead=lead, direction="outbound", status=status, body="Hi", created_at=at
    )


@pytest.fixture
def kolkata(account):
    account.time_zone = "Asia/Kolkata"  # UTC+05:30
    account.save(update_fields=["time_zone"])
    return account


@pytest.fixture
def march(kolkata, owner, agent, other_account):
    """Leads and messages around 2026-03-01 ... 2026-03-03 on the Kolkata clock."""
    st = Lead.Status
    leads = [
        make_lead(kolkata, created_at=utc("2026-02-28T18:31"), status=st.PENDING, segment="hot", source="Website"),
        make_lead(
            kolkata, created_at=utc("2026-03-01T18:00"), status=st.CONTACTED, source="Website", assigned_to=agent
        ),
        make_lead(kolkata, created_at=utc("2026-03-01T20:00"), status=st.CONVERTED, segment="cold", source="Facebook"),
        make_lead(
            kolkata,
            created_at=utc("2026-03-02T10:00"),
            status=st.LOST,
            segment="hot",
            is_opted_out=True,
            assigned_to=owner,
        ),
    ]
    send(leads[0], "read", utc("2026-02-28T19:00"))  # 03-01
    send(leads[0], "delivered", utc("2026-02-28T20:00"))  # 03-01
    send(leads[1], "sent", utc("2026-03-01T19:00"))  # 03-02 (00:30 in Kolkata)
    send(leads[3], "failed", utc("2026-03-01T19:30"))  # 03-02, the owner's lead
    send(leads[3], "read", utc("2026-03-02T19:00"))  # 03-03, the owner's lead
    send(leads[2], "queued", utc("2026-03-02T19:00"))  # 03-03: not sent yet
    Message.objects.create(
        account_id=kolkata.pk, lead=leads[0], direction="inbound", body="Hello", created_at=utc("2026-03-01T00:00")
    )
    stranger = make_lead(other_account, created_at=utc("2026-03-01T10:00"), status=st.CONVERTED)
    send(stranger, "read", utc("2026-03-01T10:00"))
    return leads


def rows(response, table_class: str) -> list[list[str]]:
    """The text of each body row of the first table with that class."""
    body = response.content.decode()
    table = re.search(rf'<table class="[^"]*\b{table_class}\b[^"]*">(.*?)</table>', body, flags=re.S).group(1)
    tbody = re.search(r"<tbody>(.*?)</tbody>", table, flags=re.S).group(1)
    return [
        [
            re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cell)).strip()
            for cell in re.findall(r"<t[hd]\b.*?</t[hd]>", row, flags=re.S)
        ]
        for row in re.findall(r"<tr\b.*?</tr>", tbody, flags=re.S)
    ]


def test_visitors_are_sent_to_the_login(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/login?next=")


def test_the_page_shows_the_selectors_numbers_for_the_range(owner_web, march):
    response = owner_web.get(URL, {"from": "2026-03-01", "to": "2026-03-03"})
    assert response.status_code == 200
    text = page_text(response)
    assert "From 1 Mar 2026 to 3 Mar 2026 (Asia/Kolkata)" in text
    assert re.search(r"4 leads in all 4 new in the range 25% converted \(1\) 1 opted out 4 messages sent", text), text
    assert rows(response, "chart-funnel") == [
        ["Pending", "1", "25%"],
        ["Contacted", "1", "25%"],
        ["Qualified", "0", "0%"],
        ["Converted", "1", "25%"],
    ]
    assert "Lost: 1 lead." in text
    assert rows(response, "chart-sources") == [["Website", "2"], ["No source", "1"], ["Facebook", "1"]]
    assert rows(response, "chart-segments") == [["Hot", "2"], ["Warm", "0"], ["Cold", "1"], ["No segment", "1"]]
    assert rows(response, "chart-new-leads") == [["Sun 1 Mar", "2"], ["Mon 2 Mar", "2"], ["Tue 3 Mar", "0"]]
    assert rows(response, "chart-messages") == [
        ["Sun 1 Mar", "2", "2", "1"],
        ["Mon 2 Mar", "1", "0", "0"],
        ["Tue 3 Mar", "1", "1", "1"],
    ]
    assert "1 failed." in text
    assignees = rows(response, "chart-assignees")
    assert assignees[0] == ["Unassigned", "2"]  # most first; ties in the selector's order
    assert sorted(assignees[1:]) == [["Aditya Agent", "1"], ["Olivia Owner", "1"]]
    # Bars: widths as percentages of the chart's largest value (SVG, no inline style).
    body = response.content.decode()
    assert 'width="100.0" height="10"' in body and 'width="50.0" height="10"' in body
    assert "style=" not in body.split("<main", 1)[1]


def test_the_numbers_are_the_apis(owner_web, owner_client, march):
    api = owner_client.get("/api/leads/analytics", {"from": "2026-03-01", "to": "2026-03-03"}).json()["data"]
    text = page_text(owner_web.get(URL, {"from": "2026-03-01", "to": "2026-03-03"}))
    assert f"{api['total']} leads in all" in text
    assert f"{api['conversionRate']:g}% converted ({api['converted']})" in text
    assert f"{api['optedOut']} opted out" in text


def test_an_agent_sees_their_scope_as_in_the_api(agent_web, agent_client, march):
    response = agent_web.get(URL, {"from": "2026-03-01", "to": "2026-03-03"})
    text = page_text(response)
    api = agent_client.get("/api/leads/analytics", {"from": "2026-03-01", "to": "2026-03-03"}).json()["data"]
    assert api["total"] == 3  # not the owner's lead
    assert "3 leads in all" in text
    assert "your leads and the unassigned ones" in text
    assert rows(response, "chart-messages") == [
        ["Sun 1 Mar", "2", "2", "1"],
        ["Mon 2 Mar", "1", "0", "0"],
        ["Tue 3 Mar", "0", "0", "0"],  # the owner's lead's messages are left out
    ]
    assert 'href="/leads/import"' not in response.content.decode()


def test_the_default_range_is_the_last_30_days(owner_web, account):
    today = timezone.now().astimezone(zoneinfo.ZoneInfo(account.time_zone)).date()
    make_lead(account, created_at=timezone.now())
    response = owner_web.get(URL)
    assert response.status_code == 200
    days = rows(response, "chart-new-leads")
    assert len(days) == 30
    assert days[-1][1] == "1"
    start = today - timedelta(days=29)
    assert f"From {start.day} {start:%b %Y} to {today.day} {today:%b %Y}" in page_text(response)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "2026-03-05", "to": "2026-03-01"}, "The start must not be after the end."),
        ({"from": "2024-01-01", "to": "2026-03-01"}, "The range is at most 366 days."),
        ({"from": "not-a-date"}, "Enter a valid date."),
        ({"to": "0001-01-01"}, "Use a date between 1900-01-01 and 2999-12-31."),
        ({"from": "9999-12-31"}, "Use a date between 1900-01-01 and 2999-12-31."),
    ],
    ids=["reversed", "too-long", "not-a-date", "too-early", "too-late"],
)
def test_an_invalid_range_is_a_form_error_showing_the_last_30_days(owner_web, params, message):
    response = owner_web.get(URL, params)
    assert response.status_code == 400
    text = page_text(response)
    assert message in text
    assert "The range is not valid: showing the last 30 days" in text
    assert len(rows(response, "chart-new-leads")) == 30


def test_a_from_date_alone_after_today_is_an_error(owner_web):
    tomorrow = date.today() + timedelta(days=2)
    assert owner_web.get(URL, {"from": tomorrow.isoformat()}).status_code == 400


def test_an_empty_account_says_what_to_do(owner_web):
    text = page_text(owner_web.get(URL))
    assert "No leads yet" in text and "import a CSV file" in text


def test_message_status_per_day_is_one_query(owner, march, django_assert_num_queries):
    with django_assert_num_queries(1):
        days = message_status_per_day(user=owner, date_from=date(2026, 3, 1), date_to=date(2026, 3, 3))
    assert [(d["date"].day, d["total"], d["sent"], d["delivered"], d["read"], d["failed"]) for d in days] == [
        (1, 2, 2, 2, 1, 0),
        (2, 2, 1, 0, 0, 1),
        (3, 2, 1, 1, 1, 0),
    ]


def test_the_page_runs_a_constant_number_of_queries(owner_web, account, owner, django_assert_num_queries):
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert owner_web.get(URL).status_code == 200
        return len(queries)

    now = timezone.now()
    for i in range(3):
        send(make_lead(account, source=f"S{i}", created_at=now - timedelta(days=i)), "read", now)
    count_queries()  # the session's first request records its start
    few = count_queries()
    for i in range(30):
        lead = make_lead(account, source=f"T{i}", segment="warm", created_at=now - timedelta(days=i % 40))
        send(lead, "delivered", now - timedelta(days=i))
    assert count_queries() == few
    # Session, user, account, the seven reads of lead_analytics, the messages per day,
    # the WhatsApp connection (the sandbox badge).
    with django_assert_num_queries(12):
        owner_web.get(URL, {"from": "2026-01-01", "to": "2026-12-31"})
