"""First cut of the Lead: what the foundation's demo data needs. The leads issue
extends it (tags, engagements, opt-out details, indexes for every filter)."""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


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
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="leads")
    name = models.CharField(max_length=200)
    phone = models.CharField(max_length=20, help_text="E.164, e.g. +919876543210")
    email = models.EmailField(max_length=254, blank=True)
    source = models.CharField(max_length=100, blank=True)
    inquiry = models.TextField(blank=True)
    segment = models.CharField(max_length=10, choices=Segment.choices, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="assigned_leads"
    )
    is_opted_out = models.BooleanField(default=False)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["account", "phone"], name="leads_lead_account_phone_unique")]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="leads_lead_account_created"),
            models.Index(fields=["account", "status"], name="leads_lead_account_status"),
            models.Index(fields=["account", "assigned_to"], name="leads_lead_account_assignee"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.phone})"
