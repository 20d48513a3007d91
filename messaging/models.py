"""First cut of the Message: what leads' contacts and analytics read. The messaging
issue adds the WhatsApp connection, templates, webhook events and the senders."""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


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

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="messages")
    lead = models.ForeignKey("leads.Lead", on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=8, choices=Direction.choices)
    type = models.CharField(max_length=8, choices=Type.choices, default=Type.TEXT)
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.QUEUED)
    body = models.TextField(blank=True)
    template_name = models.CharField(max_length=512, blank=True)
    wamid = models.CharField(max_length=128, null=True, blank=True, unique=True, help_text="WhatsApp message id")
    error_code = models.CharField(max_length=20, blank=True)
    error_title = models.CharField(max_length=300, blank=True)
    # Inbound only: whether someone on the team has seen it (HeyDoc's is_read, unread_count).
    is_read = models.BooleanField(default=False)
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="sent_messages"
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
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.type} to {self.lead_id} ({self.status})"
