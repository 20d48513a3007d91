from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    """Broadcasts, drips and scheduled messages on django-q2."""

    name = "campaigns"
    default_auto_field = "django.db.models.BigAutoField"
