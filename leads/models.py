import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

hex_color = RegexValidator(r"^#[0-9a-fA-F]{6}$", "Use a hex colour such as #ff4444.")


class Tag(models.Model):
    """A label shared by leads and HeyDoc contacts. Integer ids, as HeyDoc shows them."""

    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=50)
    color = models.CharField(max_length=7, default="#6b7280", validators=[hex_color])
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["account", "name"], name="leads_tag_account_name_unique")]

    def __str__(self) -> str:
        return self.name


class Lead(models.Model):
    class Segment(models.TextChoices):
        HOT = "hot", "Hot"
        WARM = "warm", "Warm"
        COLD = "cold", "Cold"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        CONTACTED = "contacted", "Contacted"
        QUALIFIED = "qualified", "Qualified"
        CONVERTED = "converted", "Converted"
        LOST = "lost", "Lost"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No single-column indexes on the foreign keys: the indexes below serve their
    # lookups (every one leads with the account, or with the assignee).
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="leads", db_index=False)
    name = models.CharField(max_length=200)
    phone = models.CharField(max_length=20, help_text="E.164, e.g. +919876543210")
    email = models.EmailField(max_length=254, blank=True)
    source = models.CharField(max_length=100, blank=True)
    inquiry = models.TextField(blank=True)
    segment = models.CharField(max_length=10, choices=Segment.choices, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_leads",
        db_index=False,
    )
    is_opted_out = models.BooleanField(default=False)
    opted_out_at = models.DateTimeField(null=True, blank=True)
    opt_out_reason = models.CharField(max_length=200, blank=True)
    tags = models.ManyToManyField(Tag, related_name="leads", blank=True)
    notes = models.TextField(blank=True)
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    last_outbound_at = models.DateTimeField(null=True, blank=True)
    # Latest message either way: orders HeyDoc's contact list without a subquery sort.
    last_message_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["account", "phone"], name="leads_lead_account_phone_unique")]
        # One index per filter of the list, each led by the account (every query is
        # scoped), and no more: every index is paid for by every lead written, and a CSV
        # import writes 100,000 at a time. Search has the trigram indexes of migration
        # 0003 (PostgreSQL).
        indexes = [
            models.Index(fields=["account", "-created_at"], name="leads_lead_account_created"),
            models.Index(fields=["account", "status"], name="leads_lead_account_status"),
            models.Index(fields=["account", "segment"], name="leads_lead_account_segment"),
            models.Index(fields=["account", "source"], name="leads_lead_account_source"),
            # Assignee first: it also serves the SET NULL of a deleted user, and an
            # assignee belongs to one account; "unassigned" reads (NULL, account).
            models.Index(fields=["assigned_to", "account"], name="leads_lead_assignee_account"),
            # Opted-out leads are few: a partial index, which the usual write skips.
            models.Index(fields=["account"], condition=Q(is_opted_out=True), name="leads_lead_account_optedout"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.phone})"


class Engagement(models.Model):
    class Type(models.TextChoices):
        CALL = "call", "Call"
        EMAIL = "email", "Email"
        MEETING = "meeting", "Meeting"
        NOTE = "note", "Note"
        WHATSAPP = "whatsapp", "WhatsApp"

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="engagements")
    type = models.CharField(max_length=10, choices=Type.choices)
    notes = models.TextField(blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="engagements"
    )
    at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["lead", "-at"], name="leads_engagement_lead_at")]

    def __str__(self) -> str:
        return f"{self.get_type_display()} with {self.lead_id} at {self.at:%Y-%m-%d %H:%M}"


class LeadImportJob(models.Model):
    """A CSV import too large to run inside the request: the file waits here for a
    django-q2 worker, which records its progress chunk by chunk and the final report."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="lead_import_jobs")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="lead_import_jobs"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    file_name = models.CharField(max_length=255, blank=True)
    # The uploaded file, emptied once the job completes (the report is what stays).
    data = models.BinaryField(editable=False)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="The first row errors: [{row, field, message}].")
    error_message = models.TextField(blank=True, help_text="Why the job failed, when it did.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Touched after every chunk: a running job whose heartbeat is stale lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["account", "-created_at"], name="leads_import_account_created")]

    def __str__(self) -> str:
        return f"Lead import {self.id} ({self.status})"
