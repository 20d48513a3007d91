"""GET /api/leads/analytics: counts by status, segment, source and assignee, leads
created per day in the account's time zone (zeros included), conversion rate,
opted-out count and messages in/out in the range; scoped to what the user sees, in
a constant number of queries."""

import zoneinfo
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from leads.models import Lead
from messaging.models import Message

pytestmark = pytest.mark.django_db

URL = "/api/leads/analytics"
STATUSES = {"pending", "contacted", "qualified", "converted", "lost"}
SEGMENTS = {"hot", "warm", "cold"}


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings):
    settings.RATE_LIMITS = {
        **settings.RATE_LIMITS,
        "standard": "100000/15m",
        "auth": "1000/15m",
        "webhook": "100000/15m",
    }


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


_phones = iter(range(10_000_000))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make_lead(account, name: str = "", **fields) -> Lead:
    n = next(_phones)
    return Lead.objects.create(account=account, name=name or f"Lead {n}", phone=f"+9198{n:08d}", **fields)


def add_message(lead: Lead, direction: str, at: datetime) -> Message:
    return Message.objects.create(account_id=lead.account_id, lead=lead, direction=direction, body="…", created_at=at)


def analytics(client, **params) -> dict:
    r = client.get(URL, params)
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["success"] is True
    return body["data"]


def per_day(data: dict) -> dict[str, int]:
    return {row["date"]: row["count"] for row in data["createdPerDay"]}


def assignees(data: dict) -> dict:
    return {row["userId"]: (row["name"], row["count"]) for row in data["byAssignee"]}


def sources(data: dict) -> dict:
    return {row["source"]: row["count"] for row in data["bySource"]}


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is False
    assert body["error"] == code
    return body


@pytest.fixture
def kolkata(account):
    account.time_zone = "Asia/Kolkata"  # UTC+05:30
    account.save(update_fields=["time_zone"])
    return account


@pytest.fixture
def known(kolkata, owner, agent, other_account):
    """Seven leads around the range 2026-03-01 … 2026-03-05 (Kolkata days) and their
    messages; another account's leads and messages in the same days."""
    st, sg = Lead.Status, Lead.Segment
    leads = {
        # Each comment gives the lead's creation time on the Kolkata clock.
        "L1": make_lead(  # 2026-02-20
            kolkata,
            created_at=utc("2026-02-20T12:00"),
            status=st.PENDING,
            segment=sg.HOT,
            source="Website Form",
            assigned_to=owner,
        ),
        "L2": make_lead(  # 2026-03-01 00:01
            kolkata,
            created_at=utc("2026-02-28T18:31"),
            status=st.CONTACTED,
            segment=sg.WARM,
            source="Website Form",
            assigned_to=agent,
        ),
        "L3": make_lead(  # 2026-03-01 23:30
            kolkata,
            created_at=utc("2026-03-01T18:00"),
            status=st.CONVERTED,
            segment="",
            source="Facebook",
            is_opted_out=True,
        ),
        "L4": make_lead(  # 2026-03-02 01:30 (still 03-01 in UTC)
            kolkata,
            created_at=utc("2026-03-01T20:00"),
            status=st.CONVERTED,
            segment=sg.COLD,
            source="",
            assigned_to=agent,
        ),
        "L5": make_lead(  # 2026-03-05 23:59
            kolkata,
            created_at=utc("2026-03-05T18:29"),
            status=st.LOST,
            segment=sg.HOT,
            source="Facebook",
        ),
        "L6": make_lead(  # 2026-03-06 00:01, after the range
            kolkata,
            created_at=utc("2026-03-05T18:31"),
            status=st.PENDING,
            segment=sg.WARM,
            source="Website Form",
            assigned_to=owner,
            is_opted_out=True,
        ),
        "L7": make_lead(  # 2026-02-28 23:59, before the range
            kolkata,
            created_at=utc("2026-02-28T18:29"),
            status=st.QUALIFIED,
            segment="",
            source="Referral",
            assigned_to=agent,
        ),
    }
    inbound, outbound = Message.Direction.INBOUND, Message.Direction.OUTBOUND
    add_message(leads["L2"], inbound, utc("2026-03-02T10:00"))  # in the range
    add_message(leads["L2"], outbound, utc("2026-03-02T11:00"))  # in
    add_message(leads["L2"], inbound, utc("2026-02-28T18:00"))  # 02-28 23:30 in Kolkata: out
    add_message(leads["L2"], outbound, utc("2026-03-05T18:40"))  # 03-06 00:10 in Kolkata: out
    add_message(leads["L4"], inbound, utc("2026-03-05T18:00"))  # 03-05 23:30: in
    add_message(leads["L4"], outbound, utc("2026-03-03T09:00"))  # in
    add_message(leads["L4"], outbound, utc("2026-03-04T09:00"))  # in
    add_message(leads["L1"], inbound, utc("2026-03-03T00:00"))  # in (the owner's lead)

    foreign = make_lead(
        other_account, created_at=utc("2026-03-02T06:00"), status=st.CONVERTED, segment=sg.HOT, source="Facebook"
    )
    make_lead(other_account, created_at=utc("2026-03-03T06:00"), is_opted_out=True)
    add_message(foreign, inbound, utc("2026-03-02T06:00"))
    add_message(foreign, outbound, utc("2026-03-02T07:00"))
    return leads


RANGE = {"from": "2026-03-01", "to": "2026-03-05"}


# --- Known data --------------------------------------------------------------------------


def test_counts_for_an_admin(owner_client, known, owner, agent):
    data = analytics(owner_client, **RANGE)

    assert data["total"] == 7
    assert data["byStatus"] == {"pending": 2, "contacted": 1, "qualified": 1, "converted": 2, "lost": 1}
    assert data["bySegment"] == {"hot": 2, "warm": 2, "cold": 1, "none": 2}
    assert sources(data) == {"Website Form": 3, "Facebook": 2, "Referral": 1, None: 1}
    assert len(data["bySource"]) == 4
    assert assignees(data) == {
        str(owner.pk): ("Olivia Owner", 2),
        str(agent.pk): ("Aditya Agent", 3),
        None: ("Unassigned", 2),
    }
    assert data["conversionRate"] == 28.57  # 2 of 7
    assert data["optedOut"] == 2
    assert data["messages"] == {"inbound": 3, "outbound": 3}


def test_leads_created_per_day_in_the_accounts_time_zone(owner_client, known):
    data = analytics(owner_client, **RANGE)

    assert data["createdPerDay"] == [
        {"date": "2026-03-01", "count": 2},  # L2 (02-28 18:31 UTC) and L3
        {"date": "2026-03-02", "count": 1},  # L4: 2026-03-01T20:00Z is 03-02 in Kolkata
        {"date": "2026-03-03", "count": 0},
        {"date": "2026-03-04", "count": 0},
        {"date": "2026-03-05", "count": 1},  # L5 at 23:59; L6 at 00:01 the next day is out
    ]


def test_the_same_leads_in_utc_fall_on_other_days(owner_client, known, kolkata):
    kolkata.time_zone = "UTC"
    kolkata.save(update_fields=["time_zone"])

    data = analytics(owner_client, **RANGE)

    assert per_day(data) == {
        "2026-03-01": 2,  # L3 and L4
        "2026-03-02": 0,
        "2026-03-03": 0,
        "2026-03-04": 0,
        "2026-03-05": 2,  # L5 and L6
    }
    assert data["range"]["timeZone"] == "UTC"


def test_a_single_day_range(owner_client, known):
    data = analytics(owner_client, **{"from": "2026-03-02", "to": "2026-03-02"})

    assert data["createdPerDay"] == [{"date": "2026-03-02", "count": 1}]
    assert data["messages"] == {"inbound": 1, "outbound": 1}  # L2's two on 03-02


def test_messages_are_counted_in_the_range_only(owner_client, known):
    wider = analytics(owner_client, **{"from": "2026-02-28", "to": "2026-03-06"})
    narrower = analytics(owner_client, **{"from": "2026-03-03", "to": "2026-03-04"})

    assert wider["messages"] == {"inbound": 4, "outbound": 4}
    assert narrower["messages"] == {"inbound": 1, "outbound": 2}


def test_the_range_is_echoed(owner_client, known):
    data = analytics(owner_client, **RANGE)

    assert data["range"] == {"from": "2026-03-01", "to": "2026-03-05", "timeZone": "Asia/Kolkata"}


def test_an_agent_sees_only_their_leads_and_the_unassigned(agent_client, known, agent):
    data = analytics(agent_client, **RANGE)

    assert data["total"] == 5  # L2, L4, L7 (theirs), L3, L5 (nobody's)
    assert data["byStatus"] == {"pending": 0, "contacted": 1, "qualified": 1, "converted": 2, "lost": 1}
    assert data["bySegment"] == {"hot": 1, "warm": 1, "cold": 1, "none": 2}
    assert sources(data) == {"Website Form": 1, "Facebook": 2, "Referral": 1, None: 1}
    assert assignees(data) == {str(agent.pk): ("Aditya Agent", 3), None: ("Unassigned", 2)}
    assert data["conversionRate"] == 40.0
    assert data["optedOut"] == 1
    assert per_day(data) == {"2026-03-01": 2, "2026-03-02": 1, "2026-03-03": 0, "2026-03-04": 0, "2026-03-05": 1}
    assert data["messages"] == {"inbound": 2, "outbound": 3}  # not the owner's lead's


def test_another_account_sees_only_its_own(outsider_client, known, outsider):
    data = analytics(outsider_client, **RANGE)

    assert data["total"] == 2
    assert data["byStatus"]["converted"] == 1
    assert data["conversionRate"] == 50.0
    assert data["optedOut"] == 1
    assert assignees(data) == {None: ("Unassigned", 2)}
    assert per_day(data) == {"2026-03-01": 0, "2026-03-02": 1, "2026-03-03": 1, "2026-03-04": 0, "2026-03-05": 0}
    assert data["messages"] == {"inbound": 1, "outbound": 1}


def test_an_assignee_without_a_name_is_shown_by_email(owner_client, kolkata, agent):
    agent.name = ""
    agent.save(update_fields=["name"])
    make_lead(kolkata, assigned_to=agent)

    data = analytics(owner_client)

    assert assignees(data) == {str(agent.pk): (agent.email, 1)}


# --- Rates and zeros ---------------------------------------------------------------------


def test_the_conversion_rate_is_a_percentage_with_two_decimals(owner_client, account):
    make_lead(account, status=Lead.Status.CONVERTED)
    make_lead(account, status=Lead.Status.PENDING)
    make_lead(account, status=Lead.Status.QUALIFIED)

    assert analytics(owner_client)["conversionRate"] == 33.33


def test_everything_converted_is_100(owner_client, account):
    make_lead(account, status=Lead.Status.CONVERTED)

    assert analytics(owner_client)["conversionRate"] == 100


def test_no_leads_gives_zeros_everywhere(owner_client, account):
    data = analytics(owner_client, **{"from": "2026-03-01", "to": "2026-03-03"})

    assert data["total"] == 0
    assert data["conversionRate"] == 0
    assert data["optedOut"] == 0
    assert data["byStatus"] == dict.fromkeys(STATUSES, 0)
    assert data["bySegment"] == {**dict.fromkeys(SEGMENTS, 0), "none": 0}
    assert data["bySource"] == []
    assert data["byAssignee"] == []
    assert data["createdPerDay"] == [
        {"date": "2026-03-01", "count": 0},
        {"date": "2026-03-02", "count": 0},
        {"date": "2026-03-03", "count": 0},
    ]
    assert data["messages"] == {"inbound": 0, "outbound": 0}


def test_every_status_and_segment_key_is_present_with_one_lead(owner_client, account):
    make_lead(account, status=Lead.Status.LOST, segment=Lead.Segment.COLD)

    data = analytics(owner_client)

    assert data["byStatus"] == {**dict.fromkeys(STATUSES, 0), "lost": 1}
    assert data["bySegment"] == {**dict.fromkeys(SEGMENTS, 0), "none": 0, "cold": 1}


# --- The default range -------------------------------------------------------------------


def _zone_off_utcs_date() -> str:
    """A time zone whose calendar day differs from UTC's right now, so a default range
    computed in UTC would be caught."""
    return "Pacific/Kiritimati" if timezone.now().astimezone(UTC).hour >= 12 else "Etc/GMT+12"


def test_the_default_range_is_the_last_30_days_ending_today_in_the_accounts_zone(owner_client, account):
    account.time_zone = _zone_off_utcs_date()
    account.save(update_fields=["time_zone"])
    zone = zoneinfo.ZoneInfo(account.time_zone)
    before = timezone.now().astimezone(zone).date()
    assert before != timezone.now().astimezone(UTC).date()
    make_lead(account, created_at=timezone.now())  # today
    make_lead(account, created_at=timezone.now() - timedelta(days=29))  # the first day
    make_lead(account, created_at=timezone.now() - timedelta(days=31))  # before the range

    data = analytics(owner_client)

    after = timezone.now().astimezone(zone).date()
    today = date.fromisoformat(data["range"]["to"])
    assert today in (before, after)
    assert data["range"]["from"] == (today - timedelta(days=29)).isoformat()
    days = data["createdPerDay"]
    assert len(days) == 30
    assert [row["date"] for row in days] == [(today - timedelta(days=29 - i)).isoformat() for i in range(30)]
    assert days[-1]["count"] == 1
    assert days[0]["count"] == 1
    assert sum(row["count"] for row in days) == 2
    assert data["total"] == 3  # the totals are not limited to the range


def test_only_to_gives_the_30_days_before_it(owner_client, account):
    data = analytics(owner_client, to="2026-03-30")

    assert data["range"]["from"] == "2026-03-01"
    assert len(data["createdPerDay"]) == 30


def test_only_from_runs_to_today(owner_client, account):
    today = timezone.now().astimezone(zoneinfo.ZoneInfo(account.time_zone)).date()
    start = today - timedelta(days=6)

    data = analytics(owner_client, **{"from": start.isoformat()})

    assert data["range"]["from"] == start.isoformat()
    assert data["range"]["to"] in (today.isoformat(), (today + timedelta(days=1)).isoformat())
    assert len(data["createdPerDay"]) in (7, 8)


# --- Bad ranges --------------------------------------------------------------------------


def test_from_after_to_is_refused(owner_client, account):
    body = assert_error(owner_client.get(URL, {"from": "2026-03-05", "to": "2026-03-01"}), 400, "VALIDATION_ERROR")

    assert "from" in body["errors"]


def test_only_a_future_from_is_refused_like_from_after_to(owner_client, account):
    future = (timezone.now() + timedelta(days=10)).date().isoformat()

    assert_error(owner_client.get(URL, {"from": future}), 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-13-01"}, "from"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026/03/01"}, "to"),
        ({"to": "01-03-2026"}, "to"),
        ({"from": "2026-02-30", "to": "2026-03-05"}, "from"),
        ({"from": "2026-03-01T00:00:00"}, "from"),
    ],
)
def test_bad_dates_are_refused_naming_the_parameter(owner_client, account, params, field):
    body = assert_error(owner_client.get(URL, params), 400, "VALIDATION_ERROR")

    assert field in body["errors"]


@pytest.mark.parametrize(
    "params",
    [
        {"from": "9999-12-31", "to": "9999-12-31"},
        {"from": "0001-01-01", "to": "0001-01-05"},
        {"to": "0001-01-10"},
        {"from": "9999-12-30"},
    ],
)
def test_dates_at_the_ends_of_the_calendar_are_refused_not_a_server_error(owner_client, kolkata, params):
    assert_error(owner_client.get(URL, params), 400, "VALIDATION_ERROR")


def test_a_range_longer_than_366_days_is_refused(owner_client, account):
    assert_error(owner_client.get(URL, {"from": "2024-01-01", "to": "2026-03-01"}), 400, "VALIDATION_ERROR")


def test_a_366_day_range_is_fine(owner_client, account):
    data = analytics(owner_client, **{"from": "2025-03-01", "to": "2026-03-02"})

    assert len(data["createdPerDay"]) == 367


def test_analytics_needs_a_login(api_client, account):
    assert_error(api_client.get(URL), 401, "NOT_AUTHENTICATED")


@pytest.mark.parametrize("path", [URL, URL + "/"])
def test_with_and_without_a_trailing_slash(owner_client, account, path):
    assert owner_client.get(path).status_code == 200


# --- Cost --------------------------------------------------------------------------------


def _populate(account, users, count: int) -> None:
    statuses, segments = list(Lead.Status.values), [*Lead.Segment.values, ""]
    now = timezone.now()
    for i in range(count):
        lead = make_lead(
            account,
            status=statuses[i % len(statuses)],
            segment=segments[i % len(segments)],
            source=f"Source {i % 7}",
            assigned_to=users[i % len(users)],
            is_opted_out=i % 4 == 0,
            created_at=now - timedelta(days=i % 40, hours=i % 24),
        )
        add_message(lead, Message.Direction.INBOUND, now - timedelta(days=i % 35))
        add_message(lead, Message.Direction.OUTBOUND, now - timedelta(days=i % 35, minutes=5))


@pytest.mark.parametrize("client_name", ["owner_client", "agent_client"])
def test_the_number_of_queries_does_not_grow_with_the_leads(request, kolkata, owner, agent, client_name):
    client = request.getfixturevalue(client_name)
    users = [owner, agent, None]
    _populate(kolkata, users, 5)
    analytics(client)  # the first request of a rate-limit window writes its counter

    with CaptureQueriesContext(connection) as five:
        small = analytics(client)
    _populate(kolkata, users, 45)
    with CaptureQueriesContext(connection) as fifty:
        large = analytics(client)

    indexes = [*range(5), *range(45)]
    # An agent sees their leads and nobody's: i % 3 in (1, 2).
    expected_total = len(indexes) if client_name == "owner_client" else sum(1 for i in indexes if i % 3)
    assert small["total"] < large["total"] == expected_total
    assert sum(large["byStatus"].values()) == large["total"]
    assert sum(row["count"] for row in large["byAssignee"]) == large["total"]
    assert len(fifty.captured_queries) == len(five.captured_queries), [q["sql"] for q in fifty.captured_queries]
