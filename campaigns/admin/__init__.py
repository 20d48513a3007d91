"""Django admin of campaigns, one module per kind; actions go through the services."""

from campaigns.admin import broadcasts, drips, scheduled  # noqa: F401 (registers the admins)
