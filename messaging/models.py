import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from heroshhi.fields import EncryptedTextField


class WhatsAppConnection(models.Model):
    """An account's WhatsApp Cloud API number. Without one, the account sends
    through the sandbox provider."""

    class Status(models.TextChoices):
        CONNECTED = "connected", "Connected"
        TOKEN_INVALID = "token_invalid", "Access token invalid"
        ERROR = "error", "Error"

    account = models.OneToOneField("accounts.Account", on_delete=models.CASCADE, related_name="whatsapp_connection")
    # Meta's webhook names the number, not the account: this routes inbound events.
    phone_number_id = models.CharField(max_length=64, unique=True)
    waba_id = models.CharField("WhatsApp Business Account id", max_length=64)
    display_phone_number = models.CharField(max_length=32, blank=True)
    verified_name = models.CharField(max_length=200, blank=True)
    # Meta's rating of the number (GREEN, YELLOW, RED, UNKNOWN), read at connect time.
    quality_rating = models.CharField(max_length=16, blank=True)
    access_token = EncryptedTextField()
    app_secret = EncryptedTextField()
    # Meta echoes the verify token in the subscription handshake, which names no number:
    # kept as a SHA-256 digest and matched against every connection.
    verify_token_hash = models.CharField(max_length=64, db_index=True)
    throughput_cap = models.PositiveIntegerField(
        default=80,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Messages per second: 80 by default, up to 1,000 after Meta's upgrade, 20 for coexistence.",
    )
    coexistence_enabled = models.BooleanField(
        default=False, help_text="The WhatsApp Business app runs on the same number."
    )
    record_app_echoes = models.BooleanField(
        default=True, help_text="Record messages sent from the phone app as outbound messages."
    )
    sync_app_contacts = models.BooleanField(default=False, help_text="Create leads from the phone app's contacts.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CONNECTED)
    status_detail = models.CharField(max_length=300, blank=True)
    templates_synced_at = models.DateTimeField(null=True, blank=True)
    connected_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.display_phone_number or self.phone_number_id} ({self.account})"


class Template(models.Model):
    """A message template as Meta knows it (synced), or a sandbox template."""

    class Status(models.TextChoices):
        APPROVED = "APPROVED", "Approved"
        PENDING = "PENDING", "Pending"
        REJECTED = "REJECTED", "Rejected"
        PAUSED = "PAUSED", "Paused"
        DISABLED = "DISABLED", "Disabled"
        IN_APPEAL = "IN_APPEAL", "In appeal"
        ARCHIVED = "ARCHIVED", "Archived"
        DELETED = "DELETED", "Deleted"
        LIMIT_EXCEEDED = "LIMIT_EXCEEDED", "Limit exceeded"

    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="templates")
    name = models.CharField(max_length=512)
    language = models.CharField(max_length=16, default="en_US")
    category = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=16, default=Status.PENDING)
    components = models.JSONField(default=list, blank=True)
    meta_id = models.CharField(max_length=64, blank=True)
    is_sandbox = models.BooleanField(default=False)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "language"]
        constraints = [
            models.UniqueConstraint(fields=["account", "name", "language"], name="messaging_template_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name} [{self.language}] {self.status}"


class Message(models.Model):
    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"

    class Type(models.TextChoices):
        TEXT = "text", "Text"
        TEMPLATE = "template", "Template"
        MEDIA = "media", "Media"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        READ = "read", "Read"
        FAILED = "failed", "Failed"

    class Source(models.TextChoices):
        API = "api", "API"
        DASHBOARD = "dashboard", "Dashboard"
        BULK = "bulk", "Bulk send"
        BROADCAST = "broadcast", "Broadcast"
        DRIP = "drip", "Drip"
        SCHEDULED = "scheduled", "Scheduled"
        APP_ECHO = "app_echo", "Sent from the phone app"
        WHATSAPP = "whatsapp", "From the contact"

    class Provider(models.TextChoices):
        CLOUD = "cloud", "WhatsApp Cloud API"
        SANDBOX = "sandbox", "Sandbox"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No single-column indexes on these two: the composite indexes below lead with them.
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="messages", db_index=False)
    lead = models.ForeignKey("leads.Lead", on_delete=models.CASCADE, related_name="messages", db_index=False)
    direction = models.CharField(max_length=8, choices=Direction.choices)
    type = models.CharField(max_length=8, choices=Type.choices, default=Type.TEXT)
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.QUEUED)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)
    provider = models.CharField(max_length=8, choices=Provider.choices, default=Provider.SANDBOX)
    body = models.TextField(blank=True)
    template_name = models.CharField(max_length=512, blank=True)
    template_language = models.CharField(max_length=16, blank=True)
    template_params = models.JSONField(default=list, blank=True)
    media = models.JSONField(default=dict, blank=True, help_text="Inbound media: type, id, mime type, caption.")
    # Unique through Meta.constraints: a plain unique index, without PostgreSQL's extra
    # pattern-ops index that unique=True adds to a CharField (nothing searches by prefix).
    # NULL until sent: many unsent messages, each wamid unique.
    wamid = models.CharField(max_length=128, null=True, blank=True, help_text="WhatsApp message id")  # noqa: DJ001
    error_code = models.CharField(max_length=20, blank=True)
    error_title = models.CharField(max_length=300, blank=True)
    # Inbound only: whether someone on the team has seen it (HeyDoc's is_read, unread_count).
    is_read = models.BooleanField(default=False)
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="sent_messages"
    )
    # Outbound delivery claim: set by the one worker that calls the provider.
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Who holds the claim: a batch claims many rows in one update, then reads back its own.
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    attempts = models.PositiveSmallIntegerField(default=0, editable=False)
    # The campaign occurrence this message is the outbox row of (at most one per lead).
    broadcast = models.ForeignKey(
        "campaigns.Broadcast", on_delete=models.SET_NULL, null=True, blank=True, related_name="messages", db_index=False
    )
    enrollment = models.ForeignKey(
        "campaigns.Enrollment",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
        db_index=False,
    )
    drip_step = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Position of the drip step sent.")
    scheduled_message = models.ForeignKey(
        "campaigns.ScheduledMessage",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
        db_index=False,
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["lead", "-created_at"], name="messaging_msg_lead_created"),
            models.Index(fields=["account", "-created_at"], name="messaging_msg_account_created"),
            models.Index(fields=["account", "direction", "status"], name="messaging_msg_account_dir_st"),
            models.Index(fields=["account", "type", "-created_at"], name="messaging_msg_account_type"),
            models.Index(fields=["status", "claimed_at"], name="messaging_msg_status_claimed"),
            models.Index(
                fields=["claim_token"], name="messaging_msg_claim_token", condition=Q(claim_token__isnull=False)
            ),
        ]
        # Partial: a message gets an entry only in the index of what it has (most have no
        # wamid when queued, and one origin at most), so each insert maintains fewer
        # indexes: a 100,000-lead broadcast's snapshot writes 3 index entries fewer per row.
        constraints = [
            models.UniqueConstraint(
                fields=["wamid"], name="messaging_msg_wamid_unique", condition=Q(wamid__isnull=False)
            ),
            # The outbox rows: one per broadcast and lead, enrollment step, scheduled occurrence and lead.
            models.UniqueConstraint(
                fields=["broadcast", "lead"], name="messaging_msg_broadcast_lead", condition=Q(broadcast__isnull=False)
            ),
            models.UniqueConstraint(
                fields=["enrollment", "drip_step"],
                name="messaging_msg_enrollment_step",
                condition=Q(enrollment__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["scheduled_message", "lead"],
                name="messaging_msg_scheduled_lead",
                condition=Q(scheduled_message__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.type} to {self.lead_id} ({self.status})"


class WebhookEvent(models.Model):
    """A Meta webhook delivery, stored before it is processed: kept for audit and
    replay, and so a crash between receiving and processing loses nothing."""

    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    phone_number_ids = models.JSONField(default=list, blank=True)
    payload = models.TextField(help_text="The raw body, as signed.")
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["processed_at", "received_at"], name="messaging_event_pending")]

    def __str__(self) -> str:
        return f"Webhook event {self.pk} at {self.received_at:%Y-%m-%d %H:%M:%S}"
