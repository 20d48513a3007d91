"""A trigram index for the message list's `search` (the body contains the text) on
PostgreSQL: `body__icontains` is `UPPER(body) LIKE UPPER('%text%')`, which a GIN index
of UPPER(body) with pg_trgm's operator class answers without reading every message of
the account. SQLite has no equivalent; there the search scans the account's messages."""

from django.db import migrations

INDEX = "messaging_message_body_trgm"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON messaging_message USING gin (UPPER(body) gin_trgm_ops)")


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("messaging", "0003_campaign_outbox_links_and_leaner_indexes")]

    operations = [migrations.RunPython(create_index, drop_index)]
