"""The CSV import pages of the dashboard (admins only, as the API's import).

The upload goes to leads.imports.lead_import_submit, exactly as
``POST /api/leads/import``: a small file is imported in the request and its report
shown at once (kept in the cache for an hour, behind a random token, so the report
page can be reloaded, paged and its errors downloaded); a large one becomes a
background job whose page polls its progress (htmx, every 2 s; a reload without
JavaScript) and then shows the report, read by the API's own
``lead_import_job_get``."""

import csv
import secrets
from collections.abc import Iterable, Iterator
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accounts.models import User
from accounts.views import staff_page
from heroshhi.errors import DomainError, NotFound, ValidationFailed
from leads import imports
from leads.forms import add_service_errors
from leads.forms_import import LeadImportForm
from leads.models import LeadImportJob

ERRORS_PER_PAGE = 50
RECENT_JOBS = 10
POLL_SECONDS = 2
REPORT_TTL = 60 * 60
_REPORT_KEY = "lead-import-report:{}"
FINISHED = (LeadImportJob.Status.COMPLETED, LeadImportJob.Status.FAILED)


def _admin(request: HttpRequest) -> User:
    if not request.user.is_account_admin:
        raise PermissionDenied("Only account admins can import leads.")
    return request.user


def _job_or_404(user: User, job_id) -> LeadImportJob:
    try:
        return imports.lead_import_job_get(user=user, job_id=job_id)
    except NotFound:
        raise Http404("Import job not found.") from None


def _report_or_404(user: User, token: str) -> dict:
    report = cache.get(_REPORT_KEY.format(token))
    if not report or report["account_id"] != str(user.account_id):
        raise Http404("This import report has expired.")
    return report


def _errors_page(request: HttpRequest, errors: list[dict]):
    return Paginator(errors, ERRORS_PER_PAGE).get_page(request.GET.get("page"))


# --- The upload ------------------------------------------------------------------------


@staff_page
@require_http_methods(["GET", "POST"])
def lead_import_view(request: HttpRequest) -> HttpResponse:
    user = _admin(request)
    form = LeadImportForm(request.POST, request.FILES) if request.method == "POST" else LeadImportForm()
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            outcome = imports.lead_import_submit(
                account=user.account, user=user, data=upload.read(), file_name=upload.name or ""
            )
        except ValidationFailed as exc:
            add_service_errors(form, exc)
        except DomainError as exc:  # FileTooLarge and the like: nothing was imported
            form.add_error("file", exc.message)
        else:
            if outcome.job is not None:
                return redirect("lead-import-job", job_id=outcome.job.pk)
            token = secrets.token_urlsafe(16)
            stored = {
                "account_id": str(user.account_id),
                "file_name": upload.name or "",
                "finished_at": timezone.now().isoformat(),
                **outcome.report.as_data(),
            }
            cache.set(_REPORT_KEY.format(token), stored, REPORT_TTL)
            return redirect("lead-import-report", token=token)
    context = {
        "form": form,
        "sync_max_rows": f"{settings.LEAD_IMPORT_SYNC_MAX_ROWS:,}",
        "jobs": list(LeadImportJob.objects.defer("data", "errors").filter(account_id=user.account_id)[:RECENT_JOBS]),
    }
    return render(request, "leads/import.html", context, status=400 if form.errors else 200)


# --- A report of an import done in the request -----------------------------------------


@staff_page
@require_http_methods(["GET"])
def lead_import_report_view(request: HttpRequest, token: str) -> HttpResponse:
    user = _admin(request)
    report = _report_or_404(user, token)
    context = {
        "report": report,
        "file_name": report["file_name"],
        "finished_at": datetime.fromisoformat(report["finished_at"]),
        "errors_page": _errors_page(request, report["errors"]),
        "errors_url": reverse("lead-import-report-errors", args=[token]),
        "page_url": reverse("lead-import-report", args=[token]),
    }
    return render(request, "leads/import_report.html", context)


@staff_page
@require_http_methods(["GET"])
def lead_import_report_errors_view(request: HttpRequest, token: str) -> StreamingHttpResponse:
    report = _report_or_404(_admin(request), token)
    return _errors_csv(report["errors"], "import-errors.csv")


# --- A background job --------------------------------------------------------------------


def _job_context(request: HttpRequest, job: LeadImportJob) -> dict:
    finished = job.status in FINISHED
    return {
        "job": job,
        "finished": finished,
        "progress": imports.lead_import_job_progress(job),
        "poll_seconds": POLL_SECONDS,
        # The same shape as an inline report (the API's ImportJobSerializer names).
        "report": {
            "created": job.created_count,
            "updated": job.updated_count,
            "skipped": job.skipped_count,
            "errorCount": job.error_count,
            "errorsTruncated": job.error_count > len(job.errors),
            "errors": job.errors,
        },
        "errors_page": _errors_page(request, job.errors) if finished else None,
        "errors_url": reverse("lead-import-job-errors", args=[job.pk]),
        "page_url": reverse("lead-import-job", args=[job.pk]),
    }


@staff_page
@require_http_methods(["GET"])
def lead_import_job_view(request: HttpRequest, job_id) -> HttpResponse:
    job = _job_or_404(_admin(request), job_id)
    return render(request, "leads/import_job.html", _job_context(request, job))


@staff_page
@require_http_methods(["GET"])
def lead_import_job_status_view(request: HttpRequest, job_id) -> HttpResponse:
    """The job's progress (or, once it ended, its report) alone: htmx polls it."""
    job = _job_or_404(_admin(request), job_id)
    return render(request, "leads/import_job_status.html", _job_context(request, job))


@staff_page
@require_http_methods(["GET"])
def lead_import_job_errors_view(request: HttpRequest, job_id) -> StreamingHttpResponse:
    job = _job_or_404(_admin(request), job_id)
    return _errors_csv(job.errors, f"import-errors-{job.created_at:%Y%m%d-%H%M}.csv")


# --- The error CSV -----------------------------------------------------------------------


class _Echo:
    def write(self, value: str) -> str:
        return value


def _error_rows(errors: Iterable[dict]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(["row", "field", "reason"])  # a BOM, for Excel
    for error in errors:
        # Cells echo what the file held (a bad phone, an unknown status): never a formula.
        yield writer.writerow([imports.csv_safe(error.get(key)) for key in ("row", "field", "message")])


def _errors_csv(errors: list[dict], file_name: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_error_rows(errors), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{file_name}"'
    return response
