"""Scheduled messages used to get a one-off django-q2 schedule each
(campaigns.tasks.scheduled.send_due, args the occurrence's id); dispatch is now
set-based, with one one-off run of campaigns.tasks.scheduled.dispatch_due per due
second. The old schedules still waiting become those."""

from django.db import migrations

OLD_FUNC = "campaigns.tasks.scheduled.send_due"
NEW_FUNC = "campaigns.tasks.scheduled.dispatch_due"


def forwards(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    old = Schedule.objects.filter(func=OLD_FUNC)
    for when in set(old.values_list("next_run", flat=True)):
        if when is None:
            continue
        Schedule.objects.get_or_create(
            name=f"campaigns-scheduled-due-{int(when.timestamp())}",
            defaults={"func": NEW_FUNC, "args": "()", "schedule_type": "O", "next_run": when},
        )
    old.delete()


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0002_scheduled_message_series_and_outcomes"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
