"""django-q2 entry points of the leads app: thin, they take ids and call a service."""

from leads.imports import lead_import_job_run


def lead_import_job_task(job_id: str) -> bool:
    """Runs a background CSV import (queued by ``leads.imports.lead_import_submit``).
    A second delivery of the same job does nothing."""
    return lead_import_job_run(job_id=job_id)
