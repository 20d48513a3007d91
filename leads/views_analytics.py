"""The analytics page of the dashboard: the numbers of ``GET /api/leads/analytics``
(leads.selectors.lead_analytics, scoped to what the user sees, as the API) and the
outbound messages' statuses per day (messaging.selectors.message_status_per_day),
for a date range in the account's time zone.

Charts are server-rendered bars (an SVG rectangle whose width is the percentage)
inside ordinary tables: the numbers are text, the table is what assistive
technology reads, and no chart library or inline style is needed (the CSP forbids
inline styles)."""

from dataclasses import dataclass
from datetime import date

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accounts.views import staff_page
from leads.forms_import import AnalyticsRangeForm
from leads.models import Lead
from leads.selectors import lead_analytics
from messaging.selectors import message_status_per_day

# The funnel's steps, in the order a lead moves through them; lost stands apart.
FUNNEL = (Lead.Status.PENDING, Lead.Status.CONTACTED, Lead.Status.QUALIFIED, Lead.Status.CONVERTED)
SEGMENT_LABELS = {**dict(Lead.Segment.choices), "none": "No segment"}


@dataclass(frozen=True)
class Bar:
    label: str
    count: int
    percent: float  # of the chart's largest (or total) value: the bar's width, 0-100
    key: str = ""

    @property
    def width(self) -> str:
        return f"{self.percent:.1f}"

    @property
    def offset(self) -> str:
        """Where a centred (funnel) bar starts."""
        return f"{(100 - self.percent) / 2:.1f}"


def _bars(rows: list[tuple[str, str, int]], *, scale: int | None = None) -> list[Bar]:
    """(key, label, count) rows as bars relative to ``scale`` (the largest count by default)."""
    top = scale if scale is not None else max((count for _, _, count in rows), default=0)
    return [
        Bar(label=label, count=count, percent=100 * count / top if top else 0.0, key=key) for key, label, count in rows
    ]


@dataclass(frozen=True)
class MessageDay:
    day: date
    total: int
    sent: Bar
    delivered: Bar
    read: Bar
    failed: int


def _message_days(days: list[dict]) -> list[MessageDay]:
    top = max((day["sent"] for day in days), default=0)
    return [
        MessageDay(
            day=day["date"],
            total=day["total"],
            failed=day["failed"],
            **{
                name: _bars([(name, name, day[name])], scale=top)[0]
                for name in ("sent", "delivered", "read")  # bars on one scale across the days
            },
        )
        for day in days
    ]


@staff_page
@require_http_methods(["GET"])
def analytics_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    form = AnalyticsRangeForm(request.GET or None, today=timezone.localdate())
    date_from, date_to = form.date_range()
    data = lead_analytics(user=user, date_from=date_from, date_to=date_to)
    by_status = data["byStatus"]
    # Keyed by ISO date; the template shows the day.
    per_day = _bars([(row["date"], row["date"], row["count"]) for row in data["createdPerDay"]])
    message_days = _message_days(message_status_per_day(user=user, date_from=date_from, date_to=date_to))
    context = {
        "form": form,
        "date_from": date_from,
        "date_to": date_to,
        "data": data,
        "funnel": _bars([(s, Lead.Status(s).label, by_status[s]) for s in FUNNEL]),
        "lost": by_status[Lead.Status.LOST],
        "by_source": _bars([("", row["source"] or "No source", row["count"]) for row in data["bySource"]]),
        "by_assignee": _bars([(row["userId"] or "", row["name"], row["count"]) for row in data["byAssignee"]]),
        "by_segment": _bars([(k, SEGMENT_LABELS[k], n) for k, n in data["bySegment"].items()]),
        "per_day": [(date.fromisoformat(bar.key), bar) for bar in per_day],
        "new_leads": sum(bar.count for bar in per_day),
        "message_days": message_days,
        "messages_totals": {
            name: sum(getattr(day, name).count for day in message_days) for name in ("sent", "delivered", "read")
        },
        "messages_failed": sum(day.failed for day in message_days),
    }
    return render(request, "leads/analytics.html", context, status=400 if form.errors else 200)
