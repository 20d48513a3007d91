"""The CSV import pages through Django's test client: the upload form and its errors,
the report of a small file imported at once, a large file's background job page
(progress fragment, report, paging), the error CSV (formula-safe), admins only, and
another account's job answering 404. The pages call the API's service and job
selector (leads.imports)."""

import csv
import io
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django_q.conf import Conf

from accounts.models import User
from leads import imports
from leads.models import Lead, LeadImportJob
from tests.pages import page_text

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]

IMPORT = "/leads/import"


def phone(n: int) -> str:
    return f"98765 {n:05d}"


def make_csv(header: str, *rows: str) -> bytes:
    return "\n".join([header, *rows]).encode() + b"\n"


def upload(client: Client, content: bytes, name: str = "leads.csv"):
    return client.post(IMPORT, {"file": SimpleUploadedFile(name, content, content_type="text/csv")})


def csv_rows(response) -> list[list[str]]:
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment;")
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(body)))


GOOD_AND_BAD = make_csv(
    "name,phone,status",
    f"Asha,{phone(1)},contacted",  # row 2
    f"Bilal,{phone(2)},won",  # row 3: unknown status
    f"Chitra,{phone(3)},",  # row 4
)


# --- Access ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [IMPORT, f"{IMPORT}/{uuid.uuid4()}", f"{IMPORT}/{uuid.uuid4()}/status", f"{IMPORT}/report/abc/errors.csv"],
)
def test_visitors_are_sent_to_the_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login?next=")


def test_agents_may_not_import_and_do_not_see_the_page_in_the_navigation(agent_web, owner_web, account, agent):
    job = LeadImportJob.objects.create(account=account, user=None, data=b"x", total_rows=9)
    for path in (IMPORT, f"{IMPORT}/{job.pk}", f"{IMPORT}/{job.pk}/status", f"{IMPORT}/{job.pk}/errors.csv"):
        assert agent_web.get(path).status_code == 403, path
    assert upload(agent_web, GOOD_AND_BAD).status_code == 403
    assert Lead.objects.count() == 0
    assert 'href="/leads/import"' not in agent_web.get("/leads").content.decode()
    assert 'href="/leads/import"' in owner_web.get("/leads").content.decode()


def test_another_accounts_job_is_a_404(owner_web, outsider_web, account, other_account):
    mine = LeadImportJob.objects.create(account=account, data=b"", total_rows=3, status="completed")
    for path in (f"{IMPORT}/{mine.pk}", f"{IMPORT}/{mine.pk}/status", f"{IMPORT}/{mine.pk}/errors.csv"):
        assert outsider_web.get(path).status_code == 404, path
        assert owner_web.get(path).status_code == 200, path
    assert owner_web.get(f"{IMPORT}/{uuid.uuid4()}").status_code == 404


def test_the_page_offers_a_labelled_file_input(owner_web):
    response = owner_web.get(IMPORT)
    assert response.status_code == 200
    body = response.content.decode()
    assert '<label for="id_file">CSV file' in body
    assert 'type="file" name="file"' in body
    assert 'enctype="multipart/form-data"' in body
    assert "No large imports yet" in page_text(response)
    assert "Files of up to 5,000 rows are imported at once" in page_text(response)
    # The navigation marks Import as the current page, not Leads.
    assert '<a href="/leads/import" aria-current="page">Import</a>' in body
    assert '<a href="/leads" aria-current="page">' not in body


# --- A small file: imported at once ------------------------------------------------------------


def test_a_small_file_is_imported_and_its_report_shown(owner_web, account):
    response = upload(owner_web, GOOD_AND_BAD)
    assert response.status_code == 302
    report_url = response["Location"]
    assert report_url.startswith("/leads/import/report/")
    assert sorted(Lead.objects.filter(account=account).values_list("name", flat=True)) == ["Asha", "Chitra"]

    response = owner_web.get(report_url)
    assert response.status_code == 200
    text = page_text(response)
    assert "2 created 0 updated 1 skipped" in text
    assert "1 problem in the file" in text
    assert "Row Field Reason 3 status " in text
    assert "won" in text
    assert "leads.csv" in text
    assert f'href="{report_url}/errors.csv"' in response.content.decode()

    rows = csv_rows(owner_web.get(f"{report_url}/errors.csv"))
    assert rows[0] == ["row", "field", "reason"]
    assert rows[1][:2] == ["3", "status"] and "won" in rows[1][2]
    assert len(rows) == 2

    # Importing the same file again updates instead of duplicating.
    again = owner_web.get(upload(owner_web, GOOD_AND_BAD)["Location"])
    assert "0 created 2 updated 1 skipped" in page_text(again)
    assert Lead.objects.filter(account=account).count() == 2


def test_a_report_is_private_to_its_account(owner_web, outsider_web):
    report_url = upload(owner_web, GOOD_AND_BAD)["Location"]
    assert outsider_web.get(report_url).status_code == 404
    assert outsider_web.get(f"{report_url}/errors.csv").status_code == 404
    assert owner_web.get("/leads/import/report/not-a-token").status_code == 404


def test_a_clean_file_says_every_row_was_imported(owner_web):
    response = owner_web.get(upload(owner_web, make_csv("name,phone", f"Asha,{phone(1)}"))["Location"])
    assert "Every row was imported" in page_text(response)
    assert "Download errors as CSV" not in page_text(response)


def test_the_error_csv_cannot_run_formulas(owner_web, account):
    errors = [
        {"row": 2, "field": "name", "message": '=HYPERLINK("http://evil.example")'},
        {"row": 3, "field": "phone", "message": "@SUM(A1)"},
        {"row": 4, "field": "email", "message": "+1 is not an email"},
    ]
    job = LeadImportJob.objects.create(
        account=account, data=b"", total_rows=3, status="completed", error_count=3, errors=errors
    )
    rows = csv_rows(owner_web.get(f"{IMPORT}/{job.pk}/errors.csv"))
    assert [row[2] for row in rows[1:]] == [
        '\'=HYPERLINK("http://evil.example")',
        "'@SUM(A1)",
        "'+1 is not an email",
    ]


# --- Errors: nothing imported ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "The file is empty."),
        (b"name,phone\n", "no data rows"),
        (b"PK\x03\x04\x14\x00\x06\x00binary workbook", "not a CSV"),
        (b"email\nx@example.com\n", "name"),
    ],
    ids=["empty", "header-only", "xlsx", "no-required-columns"],
)
def test_a_file_that_cannot_be_imported_is_a_form_error(owner_web, content, words):
    response = upload(owner_web, content)
    assert response.status_code == 400
    assert words in page_text(response)
    assert 'class="field-error"' in response.content.decode()
    assert Lead.objects.count() == 0


def test_no_file_is_a_form_error(owner_web):
    response = owner_web.post(IMPORT, {})
    assert response.status_code == 400
    assert "Choose a CSV file to import." in page_text(response)


def test_an_upload_over_the_limit_gets_a_page_that_says_so(owner, settings):
    """The request-size middleware refuses the body before any view reads it; a
    browser gets a page in the layout, not the API's JSON envelope."""
    settings.MAX_UPLOAD_SIZE = 1024
    client = Client()
    client.force_login(owner)
    response = upload(client, make_csv("name,phone", *(f"Lead {i},{phone(i)}" for i in range(100))))
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/html")
    text = page_text(response)
    assert "That file is too large" in text
    assert "Uploads are limited to 1.0 KB. Nothing was saved." in text
    assert Lead.objects.count() == 0


def test_a_file_over_the_limit_is_a_form_error(owner, settings):
    """The request-size middleware refuses a body over the limit before any view; a
    chunked upload (no Content-Length) gets past it, and the form refuses it."""
    settings.MIDDLEWARE = [name for name in settings.MIDDLEWARE if not name.endswith("RequestSizeLimitMiddleware")]
    settings.MAX_UPLOAD_SIZE = 1024
    client = Client()
    client.force_login(owner)
    response = upload(client, make_csv("name,phone", *(f"Lead {i},{phone(i)}" for i in range(100))))
    assert response.status_code == 400
    assert "The file is too large (limit 0.000976562 MiB)." in page_text(response)
    assert Lead.objects.count() == 0


# --- A large file: a background job --------------------------------------------------------------


@pytest.fixture
def small_jobs(settings, monkeypatch):
    settings.LEAD_IMPORT_SYNC_MAX_ROWS = 3
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)


def test_a_large_file_becomes_a_job_whose_page_shows_progress_then_the_report(owner_web, account, small_jobs):
    rows = [f"Lead {i},{phone(i)}" for i in range(6)]
    rows[2] = "Bad,123"  # row 4
    content = make_csv("name,phone", *rows)
    response = upload(owner_web, content, name="big.csv")
    assert response.status_code == 302
    job = LeadImportJob.objects.get()
    assert response["Location"] == f"/leads/import/{job.pk}"
    assert (job.status, job.total_rows, job.user.role) == ("queued", 6, User.Role.ADMIN)

    response = owner_web.get(f"/leads/import/{job.pk}")
    body = response.content.decode()
    assert f'hx-get="/leads/import/{job.pk}/status" hx-trigger="every 2s"' in body
    assert "0% \N{EM DASH} 0 of 6 rows processed" in page_text(response)
    assert "reload it" in page_text(response)
    fragment = owner_web.get(f"/leads/import/{job.pk}/status", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.content.decode()
    assert 'hx-trigger="every 2s"' in fragment.content.decode()

    # Half-way (the worker committed a chunk).
    LeadImportJob.objects.filter(pk=job.pk).update(status="running", processed_rows=3, created_count=2, skipped_count=1)
    assert "50% \N{EM DASH} 3 of 6 rows processed: 2 created, 0 updated, 1 skipped" in page_text(
        owner_web.get(f"/leads/import/{job.pk}/status")
    )
    LeadImportJob.objects.filter(pk=job.pk).update(status="queued", processed_rows=0, created_count=0, skipped_count=0)

    assert imports.lead_import_job_run(job_id=job.pk) is True
    fragment = owner_web.get(f"/leads/import/{job.pk}/status")
    assert "hx-trigger" not in fragment.content.decode()  # finished: the polling stops
    text = page_text(owner_web.get(f"/leads/import/{job.pk}"))
    assert "Import finished" in text
    assert "5 created 0 updated 1 skipped" in text
    assert "Row Field Reason 4 phone '123' is not a valid phone number." in text
    rows = csv_rows(owner_web.get(f"/leads/import/{job.pk}/errors.csv"))
    assert rows == [["row", "field", "reason"], ["4", "phone", "'123' is not a valid phone number."]]
    listed = page_text(owner_web.get(IMPORT))
    assert "big.csv" in listed and "Completed" in listed


def test_the_job_runs_through_django_q(owner_web, small_jobs, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(Conf, "SYNC", True)
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(owner_web, make_csv("name,phone", *(f"Lead {i},{phone(i)}" for i in range(5))))
    text = page_text(owner_web.get(response["Location"]))
    assert "5 created 0 updated 0 skipped" in text
    assert "Every row was imported" in text


def test_a_failed_job_says_why(owner_web, account):
    job = LeadImportJob.objects.create(
        account=account, data=b"", total_rows=10, status="failed", error_message="The database went away."
    )
    text = page_text(owner_web.get(f"/leads/import/{job.pk}"))
    assert "The import stopped. The database went away." in text


def test_many_bad_rows_are_paged_and_a_truncated_list_says_so(owner_web, account):
    errors = [{"row": n, "field": "phone", "message": f"Bad phone {n}."} for n in range(2, 122)]
    job = LeadImportJob.objects.create(
        account=account,
        data=b"",
        total_rows=2000,
        processed_rows=2000,
        status="completed",
        skipped_count=1500,
        error_count=1500,
        errors=errors,
    )
    url = f"/leads/import/{job.pk}"
    text = page_text(owner_web.get(url))
    assert "1500 problems in the file" in text
    assert "Only the first 120 of 1500 problems are listed" in text
    assert "Bad phone 51." in text and "Bad phone 52." not in text
    assert "Page 1 of 3" in text
    second = page_text(owner_web.get(f"{url}?page=2"))
    assert "Bad phone 52." in second and "Bad phone 51." not in second
    assert len(csv_rows(owner_web.get(f"{url}/errors.csv"))) == 121


# --- Queries ---------------------------------------------------------------------------------------


def count_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_pages_run_a_constant_number_of_queries(owner_web, account, django_assert_num_queries):
    def job(n: int) -> LeadImportJob:
        errors = [{"row": i, "field": "name", "message": "Name is required."} for i in range(n)]
        return LeadImportJob.objects.create(
            account=account, data=b"", total_rows=n, status="completed", error_count=n, errors=errors
        )

    small, large = job(3), job(300)
    count_queries(owner_web, IMPORT)  # the session's first request records its start
    few = count_queries(owner_web, IMPORT)
    for _ in range(20):
        job(1)
    assert count_queries(owner_web, IMPORT) == few
    assert count_queries(owner_web, f"{IMPORT}/{small.pk}") == count_queries(owner_web, f"{IMPORT}/{large.pk}")
    assert count_queries(owner_web, f"{IMPORT}/{small.pk}/status") == count_queries(
        owner_web, f"{IMPORT}/{large.pk}/status"
    )
    # Session, user, account, the page's one read, the WhatsApp connection (the sandbox badge).
    with django_assert_num_queries(5):
        owner_web.get(IMPORT)
    with django_assert_num_queries(5):
        owner_web.get(f"{IMPORT}/{large.pk}")
    with django_assert_num_queries(4):  # the fragment has no navigation bar
        owner_web.get(f"{IMPORT}/{large.pk}/status")
    small_report = upload(owner_web, GOOD_AND_BAD)["Location"]
    bad = make_csv("name,phone", *(f",{phone(i)}" for i in range(200)))
    large_report = upload(owner_web, bad)["Location"]
    assert count_queries(owner_web, small_report) == count_queries(owner_web, large_report)
