"""The one recurring schedule that drives every kind of due campaign work."""

import pytest
from django_q.models import Schedule

from campaigns import services as campaign_services
from campaigns import tasks
from campaigns.services import broadcasts, drips, scheduled


@pytest.mark.django_db
def test_dispatch_runs_every_kind_even_when_one_raises(monkeypatch):
    ran = []

    def broken():
        raise RuntimeError("a poison row")

    monkeypatch.setattr(broadcasts, "broadcasts_start_due", broken)
    monkeypatch.setattr(drips, "enrollments_process_due", lambda: ran.append("drips") or 3)
    monkeypatch.setattr(scheduled, "scheduled_messages_dispatch_due", lambda: ran.append("scheduled") or 2)

    done = tasks.dispatch_due()

    assert ran == ["drips", "scheduled"]
    assert done == {"broadcasts": "error", "drips": 3, "scheduled": 2}


@pytest.mark.django_db
def test_the_dispatcher_is_scheduled_once_every_minute(monkeypatch):
    monkeypatch.setattr(campaign_services, "_dispatcher_seen_until", 0.0)
    campaign_services.dispatcher_ensure()
    monkeypatch.setattr(campaign_services, "_dispatcher_seen_until", 0.0)
    campaign_services.dispatcher_ensure()  # another process, later: finds it

    schedules = Schedule.objects.filter(func="campaigns.tasks.dispatch_due")
    assert schedules.count() == 1
    assert (schedules.get().schedule_type, schedules.get().minutes, schedules.get().repeats) == (
        Schedule.MINUTES,
        1,
        -1,
    )


@pytest.mark.django_db
def test_dispatch_at_the_same_key_twice_schedules_one_run():
    from django.utils import timezone

    when = timezone.now()
    for _ in range(2):
        campaign_services.dispatch_at(when, func="campaigns.tasks.dispatch_due", key="same-thing")
    assert Schedule.objects.filter(name="campaigns-same-thing").count() == 1
