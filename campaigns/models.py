"""Broadcasts, drips and scheduled messages.

Their outbox is ``messaging.Message`` itself: each send of a campaign is one queued
outbound Message linked back to its broadcast, enrollment step or scheduled occurrence,
with a unique constraint per (campaign occurrence, lead) so a duplicate task can't
create a second row, and the messaging claim (a conditional update before the
provider is called) so a duplicate task can't send one row twice.
"""

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Broadcast(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="broadcasts")
    name = models.CharField(max_length=200)
    # Text, or an approved template; both may carry per-lead variables such as {{name}}.
    text = models.TextField(blank=True)
    template_name = models.CharField(max_length=512, blank=True)
    template_language = models.CharField(max_length=16, blank=True)
    template_params = models.JSONField(default=list, blank=True)
    # {"leadIds": [...]} or {"filter": {"segment": …, "status": …, "tags": […], …}}, as given.
    audience = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="broadcasts"
    )
    # Counted when the audience is snapshotted into outbox messages.
    recipients = models.PositiveIntegerField(default=0, help_text="Outbox messages created for the audience.")
    skipped_opted_out = models.PositiveIntegerField(default=0)
    skipped_invalid = models.PositiveIntegerField(default=0)
    skipped_window_closed = models.PositiveIntegerField(default=0)
    cancelled_unsent = models.PositiveIntegerField(default=0, help_text="Queued messages dropped by a cancel.")
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="campaigns_bc_account_created"),
            models.Index(fields=["account", "status"], name="campaigns_bc_account_status"),
            models.Index(fields=["status", "scheduled_at"], name="campaigns_bc_status_due"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class Drip(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="drips")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True, help_text="Inactive drips take no enrollments and send nothing.")
    stop_on_reply = models.BooleanField(default=True, help_text="Stop a lead's enrollment when the lead writes.")
    stop_on_conversion = models.BooleanField(default=True, help_text="Stop when the lead's status becomes converted.")
    # Optional daily window in the account's time zone; steps due outside it wait for it.
    send_window_start = models.TimeField(null=True, blank=True)
    send_window_end = models.TimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="drips"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "created_at"]
        indexes = [models.Index(fields=["account", "name"], name="campaigns_drip_account_name")]

    def __str__(self) -> str:
        return self.name


class DripStep(models.Model):
    class DelayUnit(models.TextChoices):
        MINUTES = "minutes", "Minutes"
        HOURS = "hours", "Hours"
        DAYS = "days", "Days"

    drip = models.ForeignKey(Drip, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField(help_text="Order within the drip, from 0.")
    # After the previous step (or the enrollment, for the first step).
    delay_amount = models.PositiveIntegerField(default=0, validators=[MaxValueValidator(100_000)])
    delay_unit = models.CharField(max_length=7, choices=DelayUnit.choices, default=DelayUnit.DAYS)
    text = models.TextField(blank=True)
    template_name = models.CharField(max_length=512, blank=True)
    template_language = models.CharField(max_length=16, blank=True)
    template_params = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["drip", "position"]
        constraints = [models.UniqueConstraint(fields=["drip", "position"], name="campaigns_dripstep_position")]

    def __str__(self) -> str:
        return f"{self.drip} step {self.position + 1}"


class Enrollment(models.Model):
    """A lead's way through a drip: the next step to send and when it is due."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        STOPPED = "stopped", "Stopped"

    class StopReason(models.TextChoices):
        OPTED_OUT = "opted_out", "Opted out"
        REPLIED = "replied", "Replied"
        CONVERTED = "converted", "Converted"
        CANCELLED = "cancelled", "Cancelled"
        DRIP_INACTIVE = "drip_inactive", "Drip deactivated"

    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="enrollments")
    drip = models.ForeignKey(Drip, on_delete=models.CASCADE, related_name="enrollments")
    lead = models.ForeignKey("leads.Lead", on_delete=models.CASCADE, related_name="enrollments")
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.ACTIVE)
    stop_reason = models.CharField(max_length=13, choices=StopReason.choices, blank=True)
    next_step = models.PositiveSmallIntegerField(default=0, help_text="Position of the next step to send.")
    next_due_at = models.DateTimeField(null=True, blank=True)
    steps_sent = models.PositiveSmallIntegerField(default=0)
    steps_skipped = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)
    enrolled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="enrollments"
    )
    enrolled_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-enrolled_at"]
        constraints = [
            # Enrolling an already-active lead does nothing; a finished one may enroll again.
            models.UniqueConstraint(
                fields=["drip", "lead"], condition=Q(status="active"), name="campaigns_enrollment_one_active"
            )
        ]
        indexes = [
            models.Index(fields=["status", "next_due_at"], name="campaigns_enr_due"),
            models.Index(fields=["drip", "status"], name="campaigns_enr_drip_status"),
            models.Index(fields=["lead", "status"], name="campaigns_enr_lead_status"),
        ]

    def __str__(self) -> str:
        return f"{self.lead_id} in {self.drip_id} ({self.status})"


class ScheduledMessage(models.Model):
    """HeyDoc's scheduled message: a text for a list of phones at a time, maybe
    recurring. Each occurrence is its own row; a recurring one creates the next."""

    class Recurrence(models.TextChoices):
        NONE = "none", "Once"
        DAILY = "daily", "Daily"
        WEEKLY = "weekly", "Weekly"
        MONTHLY = "monthly", "Monthly"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    # HeyDoc's ids are integers: the default BigAutoField.
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="scheduled_messages")
    message = models.TextField(blank=True)
    template_name = models.CharField(max_length=512, blank=True)
    template_language = models.CharField(max_length=16, blank=True)
    template_params = models.JSONField(default=list, blank=True)
    recipients = models.JSONField(default=list, help_text="Phones as digits with the country code.")
    scheduled_time = models.DateTimeField()
    recurrence = models.CharField(max_length=7, choices=Recurrence.choices, default=Recurrence.NONE)
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.PENDING)
    # The occurrence this one recurs from: one-to-one, so a retried run can't create two.
    previous = models.OneToOneField(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="next_occurrence"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="scheduled_messages"
    )
    # The series' first occurrence time: later occurrences keep its wall-clock time (and
    # day of month) in the account's time zone, across DST changes and short months.
    series_start = models.DateTimeField(null=True, blank=True, editable=False)
    # Counted when the occurrence is dispatched (its outbox messages created).
    queued = models.PositiveIntegerField(default=0, help_text="Outbox messages created for the recipients.")
    skipped_opted_out = models.PositiveIntegerField(default=0)
    skipped_window_closed = models.PositiveIntegerField(
        default=0, help_text="Text not sent: the contact's 24-hour window was closed (send a template)."
    )
    skipped_invalid = models.PositiveIntegerField(
        default=0,
        help_text="Recipients the creator may not message (a colleague's contact), or whose template "
        "parameter would be empty.",
    )
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="When its messages were queued.")

    class Meta:
        ordering = ["scheduled_time", "id"]
        indexes = [
            models.Index(fields=["status", "scheduled_time"], name="campaigns_sched_due"),
            models.Index(fields=["account", "status", "scheduled_time"], name="campaigns_sched_account"),
            # The lists: an admin's (the account's, latest first) and an agent's (their own).
            models.Index(fields=["account", "-scheduled_time"], name="campaigns_sched_account_time"),
            models.Index(fields=["created_by", "status", "scheduled_time"], name="campaigns_sched_creator"),
        ]

    def __str__(self) -> str:
        return f"Scheduled message {self.pk} at {self.scheduled_time:%Y-%m-%d %H:%M} ({self.status})"
