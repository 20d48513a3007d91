"""Trigram indexes for the lead list's `search` (name, phone, email contain the text)
on PostgreSQL. SQLite has no equivalent; there the search scans the account's leads."""

from django.db import migrations

INDEXED = ["name", "phone", "email"]


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in INDEXED:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS leads_lead_{column}_trgm ON leads_lead USING gin (UPPER({column}) gin_trgm_ops)"
        )


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in INDEXED:
        schema_editor.execute(f"DROP INDEX IF EXISTS leads_lead_{column}_trgm")


class Migration(migrations.Migration):
    dependencies = [("leads", "0002_tags_engagements_and_filter_indexes")]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
