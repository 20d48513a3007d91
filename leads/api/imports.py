"""CSV import and export of leads: ``POST /api/leads/import``, ``GET
/api/leads/import/<job id>``, ``GET /api/leads/export``. Thin views over
``leads.imports``; included by ``leads.api.urls``."""

from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsAccountAdmin
from heroshhi.api import api_path, error_responses
from heroshhi.errors import ValidationFailed
from leads import imports
from leads.models import LeadImportJob


class RowErrorSerializer(serializers.Serializer):
    row = serializers.IntegerField(help_text="The row number a spreadsheet shows (the header is row 1).")
    field = serializers.CharField(help_text="The column: name, phone, email, source, inquiry, segment, status, …")
    message = serializers.CharField()


class ImportReportSerializer(serializers.Serializer):
    created = serializers.IntegerField(help_text="Leads created.")
    updated = serializers.IntegerField(
        help_text="Rows that updated a lead (already in the account or earlier in the file)."
    )
    skipped = serializers.IntegerField(help_text="Rows skipped for their errors.")
    errors = RowErrorSerializer(many=True, help_text="The first 1,000 row errors.")
    errorCount = serializers.IntegerField(help_text="Every row error, also those beyond the first 1,000.")
    errorsTruncated = serializers.BooleanField(help_text="True when `errors` holds only the first 1,000.")


class ImportJobSerializer(serializers.Serializer):
    jobId = serializers.UUIDField(source="id")
    status = serializers.ChoiceField(choices=LeadImportJob.Status.choices)
    totalRows = serializers.IntegerField(source="total_rows")
    processedRows = serializers.IntegerField(source="processed_rows")
    progress = serializers.SerializerMethodField(help_text="Percent of the rows processed, 0-100.")
    created = serializers.IntegerField(source="created_count")
    updated = serializers.IntegerField(source="updated_count")
    skipped = serializers.IntegerField(source="skipped_count")
    errors = RowErrorSerializer(many=True)
    errorCount = serializers.IntegerField(source="error_count")
    errorsTruncated = serializers.SerializerMethodField()
    errorMessage = serializers.CharField(source="error_message", help_text="Why a failed job stopped.")
    createdAt = serializers.DateTimeField(source="created_at")
    startedAt = serializers.DateTimeField(source="started_at", allow_null=True)
    finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)

    def get_progress(self, job) -> int:
        return imports.lead_import_job_progress(job)

    def get_errorsTruncated(self, job) -> bool:
        return job.error_count > len(job.errors)


def _envelope(name: str, data) -> serializers.Serializer:
    return inline_serializer(name=name, fields={"success": serializers.BooleanField(), "data": data})


_IMPORT_DESCRIPTION = f"""
A CSV file in the multipart field `file` (at most {settings.MAX_UPLOAD_SIZE // (1024 * 1024)} MiB;
admins only). UTF-8 with or without a BOM, or Excel's Windows-1252; comma, semicolon or tab
separated. Headers, in any order and case: **name** and **phone** (required), email, source,
inquiry, segment (hot/warm/cold), status (pending/contacted/qualified/converted/lost), tags
(separated by `;`, created when new), assignedTo (the email of a user of the account), notes.

Each bad row is skipped and reported as `{{row, field, message}}` (the header is row 1); every
good row is imported. A phone already in the account, or earlier in the file, updates that
lead (later rows win; empty cells never erase) instead of duplicating it.

Files of up to `LEAD_IMPORT_SYNC_MAX_ROWS` ({settings.LEAD_IMPORT_SYNC_MAX_ROWS}) data rows are
imported in the request (200, the report); larger ones run in the background (202, a job id to
follow at `GET /api/leads/import/{{jobId}}`).
""".strip()


class LeadImportView(APIView):
    permission_classes = (IsAuthenticated, IsAccountAdmin)
    parser_classes = (MultiPartParser, FormParser)

    @extend_schema(
        tags=["leads"],
        summary="Import leads from a CSV file",
        description=_IMPORT_DESCRIPTION,
        request={
            "multipart/form-data": inline_serializer(
                name="LeadImportUpload", fields={"file": serializers.FileField(help_text="The CSV file.")}
            )
        },
        responses={
            200: _envelope("LeadImportReportResponse", ImportReportSerializer()),
            202: _envelope(
                "LeadImportAcceptedResponse",
                inline_serializer(
                    name="LeadImportAccepted",
                    fields={
                        "jobId": serializers.UUIDField(),
                        "status": serializers.CharField(help_text="`queued`: follow the job for the rest."),
                        "totalRows": serializers.IntegerField(help_text="Data rows in the file."),
                    },
                ),
            ),
            **error_responses(400, 401, 403, 413, 429),
        },
    )
    def post(self, request):
        upload = request.FILES.get("file")
        if upload is None:
            raise ValidationFailed("file: Send the CSV file in the field `file`.", errors={"file": ["Required."]})
        if upload.size is not None and upload.size > settings.MAX_UPLOAD_SIZE:
            raise imports.FileTooLarge(
                f"The file is too large (limit {settings.MAX_UPLOAD_SIZE // (1024 * 1024)} MiB)."
            )
        outcome = imports.lead_import_submit(
            account=request.user.account, user=request.user, data=upload.read(), file_name=upload.name or ""
        )
        if outcome.job is not None:
            job = outcome.job
            return Response(
                {"success": True, "data": {"jobId": job.pk, "status": job.status, "totalRows": job.total_rows}},
                status=status.HTTP_202_ACCEPTED,
            )
        return Response({"success": True, "data": outcome.report.as_data()})


class LeadImportJobView(APIView):
    permission_classes = (IsAuthenticated, IsAccountAdmin)

    @extend_schema(
        tags=["leads"],
        summary="Progress and report of a background CSV import",
        responses={
            200: _envelope("LeadImportJobResponse", ImportJobSerializer()),
            **error_responses(401, 403, 404, 429),
        },
    )
    def get(self, request, job_id):
        job = imports.lead_import_job_get(user=request.user, job_id=job_id)
        return Response({"success": True, "data": ImportJobSerializer(job).data})


class LeadExportView(APIView):
    def perform_content_negotiation(self, request, force=False):
        # The CSV is the answer whatever Accept says (text/csv included); errors are JSON.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        tags=["leads"],
        summary="Export the leads you can see as CSV",
        description="Columns as the import reads them (name, phone, email, source, inquiry, segment, status, "
        "tags, assignedTo, notes) plus isOptedOut and createdAt; phones as digits with the country code. "
        "A cell starting with = + - @ gets a leading `'` so spreadsheets don't run it as a formula.",
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="The CSV file (UTF-8 with a BOM)."),
            **error_responses(401, 429),
        },
    )
    def get(self, request):
        rows = imports.lead_export_csv(user=request.user)
        response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="leads-{timezone.now():%Y%m%d}.csv"'
        return response


urlpatterns = [
    *api_path("leads/import", LeadImportView.as_view(), "api-leads-import"),
    *api_path("leads/import/<uuid:job_id>", LeadImportJobView.as_view(), "api-leads-import-job"),
    *api_path("leads/export", LeadExportView.as_view(), "api-leads-export"),
]
