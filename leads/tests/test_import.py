"""CSV lead import and export: reading the file (headers, encodings, delimiters),
per-row errors with the row numbers a spreadsheet shows, duplicates updating instead
of duplicating, tags, assignees, tenancy, a constant number of queries, all-or-nothing
writes, background jobs (django-q2 in sync mode and a real qcluster worker) and the
formula-safe export."""

import csv
import gc
import io
import random
import subprocess
import sys
import time
import uuid
import weakref

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import resolve
from django_q.conf import Conf

from accounts.models import User
from accounts.tests.factories import AccountFactory, UserFactory
from heroshhi.errors import PermissionDenied, ValidationFailed
from heroshhi.text import clean_text
from leads import imports
from leads.api.imports import LeadImportView
from leads.imports import ImportReport, csv_safe, lead_import_csv, lead_import_job_run, lead_import_submit
from leads.models import Lead, LeadImportJob, Tag
from leads.tests.factories import LeadFactory, TagFactory
from tests.servers import PROJECT_ROOT, server_env

IMPORT = "/api/leads/import"
EXPORT = "/api/leads/export"


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "standard": "100000/15m"}


def phone(n: int) -> str:
    """A valid Indian mobile number as a person types it (national form)."""
    return f"98765 {n:05d}"


def e164(n: int) -> str:
    return f"+9198765{n:05d}"


def make_csv(header: str, *rows: str, newline: str = "\n") -> bytes:
    return newline.join([header, *rows]).encode() + newline.encode()


def upload(client, content: bytes, name: str = "leads.csv"):
    return client.post(IMPORT, {"file": SimpleUploadedFile(name, content, content_type="text/csv")}, format="multipart")


def import_csv(owner, content: bytes) -> ImportReport:
    return lead_import_csv(account=owner.account, user=owner, data=content)


def assert_file_error(response, *words: str) -> str:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["success"] is False
    assert body["error"] == "VALIDATION_ERROR"
    assert "file" in body["errors"]
    for word in words:
        assert word in body["message"], body["message"]
    return body["message"]


def test_the_routes_are_the_import_views():
    for path in (IMPORT, f"{IMPORT}/", f"{IMPORT}/{uuid.uuid4()}", EXPORT, f"{EXPORT}/"):
        assert resolve(path).func.view_class.__module__ == LeadImportView.__module__, path


# --- Reading the file ------------------------------------------------------------------


@pytest.mark.django_db
def test_headers_match_whatever_their_case_and_spacing(owner, owner_client):
    content = make_csv(
        " Name ,PHONE,  E-mail ,Source,INQUIRY,Segment,Status,Tags,Assigned To,notes",
        f"Asha Rao,{phone(1)},Asha@Example.com,Expo,Wants a demo,HOT,Qualified,vip,{owner.email.upper()},Call back",
    )
    response = upload(owner_client, content)
    assert response.status_code == 200, response.content
    assert response.json() == {
        "success": True,
        "data": {"created": 1, "updated": 0, "skipped": 0, "errors": [], "errorCount": 0, "errorsTruncated": False},
    }
    lead = Lead.objects.get(account=owner.account)
    assert (lead.name, lead.phone, lead.email, lead.source, lead.inquiry) == (
        "Asha Rao",
        e164(1),
        "asha@example.com",
        "Expo",
        "Wants a demo",
    )
    assert (lead.segment, lead.status, lead.assigned_to, lead.notes) == ("hot", "qualified", owner, "Call back")
    assert [tag.name for tag in lead.tags.all()] == ["vip"]


@pytest.mark.django_db
def test_utf8_with_bom(owner):
    content = "\ufeffname,phone\nJosé Núñez,+91 98765 00001\n".encode()
    report = import_csv(owner, content)
    assert (report.created, report.errors) == (1, [])
    assert Lead.objects.get().name == "José Núñez"


@pytest.mark.django_db
def test_excel_cp1252_is_the_fallback(owner):
    content = "name;phone;inquiry\nRené Dubois;+91 98765 00001;Prix: 100 €\n".encode("cp1252")
    with pytest.raises(UnicodeDecodeError):
        content.decode("utf-8")
    report = import_csv(owner, content)
    assert (report.created, report.errors) == (1, [])
    lead = Lead.objects.get()
    assert (lead.name, lead.inquiry) == ("René Dubois", "Prix: 100 €")


@pytest.mark.django_db
def test_semicolon_files_with_crlf_and_quoted_cells(owner):
    content = make_csv(
        "name;phone;tags;inquiry",
        f'"Rao; Asha";{phone(1)};vip;"line one\r\nline two"',
        f"Ben;{phone(2)};a;b",
        newline="\r\n",
    )
    report = import_csv(owner, content)
    assert (report.created, report.skipped) == (2, 0)
    lead = Lead.objects.get(phone=e164(1))
    assert lead.name == "Rao; Asha"
    assert lead.inquiry == "line one\nline two"  # clean_text normalises the CR, as everywhere else
    assert sorted(Tag.objects.values_list("name", flat=True)) == ["a", "vip"]


@pytest.mark.django_db
def test_tab_separated_files(owner):
    report = import_csv(owner, make_csv("name\tphone", f"Asha\t{phone(1)}"))
    assert report.created == 1


@pytest.mark.django_db
def test_a_file_without_name_or_phone_columns_is_refused_naming_them(owner_client):
    message = assert_file_error(upload(owner_client, make_csv("full name,mobile,email", "A,1,a@b.c")), "name", "phone")
    assert "no name and no phone column" in message
    message = assert_file_error(upload(owner_client, make_csv("name,email", "A,a@b.c")), "phone")
    assert "no phone column" in message and "no name" not in message
    assert Lead.objects.count() == 0


@pytest.mark.django_db
def test_a_required_column_twice_is_refused(owner_client):
    assert_file_error(upload(owner_client, make_csv("name,phone,Phone", f"A,{phone(1)},{phone(2)}")), "phone")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", ["empty"]),
        (b"\xef\xbb\xbf  \n", ["empty"]),
        (b"name,phone\n", ["no data rows"]),
        (b"PK\x03\x04\x14\x00\x06\x00binary workbook", ["not a CSV"]),
        (b"name,phone\x00\nA,1\n", ["not a CSV"]),
        # 0x81 and 0x8d are neither UTF-8 nor Windows-1252.
        (b"name,phone\n\x81\x8d,98765 00001\n", ["UTF-8", "Windows-1252"]),
    ],
    ids=["empty", "bom-only", "header-only", "xlsx", "nul-bytes", "undecodable"],
)
def test_files_that_are_not_usable_csv_are_400(owner_client, content, words):
    assert_file_error(upload(owner_client, content), *words)
    assert Lead.objects.count() == 0


@pytest.mark.django_db
def test_missing_file_field_is_400(owner_client):
    response = owner_client.post(IMPORT, {"other": "x"}, format="multipart")
    assert response.status_code == 400
    assert response.json()["error"] == "VALIDATION_ERROR"
    assert "file" in response.json()["errors"]


@pytest.mark.django_db
def test_an_upload_over_max_upload_size_is_413(owner, owner_client, settings):
    settings.MAX_UPLOAD_SIZE = 4096
    content = make_csv("name,phone", *(f"Lead {i},{phone(i)}" for i in range(400)))
    assert len(content) > 4096
    response = upload(owner_client, content)
    assert response.status_code == 413
    assert response.json()["error"] == "PAYLOAD_TOO_LARGE"
    # The service checks the size too (a chunked upload has no Content-Length).
    with pytest.raises(imports.FileTooLarge):
        lead_import_submit(account=owner.account, user=owner, data=content)
    assert Lead.objects.count() == 0


@pytest.mark.django_db
def test_a_cell_too_large_for_the_csv_module_is_a_400_naming_the_row(owner_client):
    content = make_csv("name,phone,notes", f"A,{phone(1)},short", f'B,{phone(2)},"{"x" * 200_000}"')
    assert_file_error(upload(owner_client, content), "Row 3")
    assert Lead.objects.count() == 0


# --- Rows ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_bad_rows_are_reported_with_spreadsheet_row_numbers_and_good_rows_imported(owner, other_account):
    stranger = UserFactory(account=other_account, email="stranger@globex.test")
    content = make_csv(
        "name,phone,email,segment,status,assignedTo",
        f"Good One,{phone(1)},,,,",  # row 2
        f",{phone(2)},,,,",  # row 3: no name
        "Bad Phone,12345,,,,",  # row 4
        f"Bad Segment,{phone(4)},,scorching,,",  # row 5
        f"Bad Status,{phone(5)},,,won,",  # row 6
        f"Stranger,{phone(6)},,,,{stranger.email}",  # row 7: another account's user
        f"Bad Email,{phone(7)},not-an-email,,,",  # row 8
        "",  # row 9: blank, ignored but counted by the spreadsheet
        f"Good Two,{phone(10)},two@example.com,warm,contacted,",  # row 10
        f",,,,,{'nobody@acme.test'}",  # row 11: two errors, and an unknown assignee
    )
    report = import_csv(owner, content)
    assert [(e["row"], e["field"]) for e in report.errors] == [
        (3, "name"),
        (4, "phone"),
        (5, "segment"),
        (6, "status"),
        (7, "assignedTo"),
        (8, "email"),
        (11, "name"),
        (11, "phone"),
        (11, "assignedTo"),
    ]
    messages = {(e["row"], e["field"]): e["message"] for e in report.errors}
    assert messages[(3, "name")] == "Name is required."
    assert "'12345' is not a valid phone number" in messages[(4, "phone")]
    assert "scorching" in messages[(5, "segment")] and "hot, warm or cold" in messages[(5, "segment")]
    assert "won" in messages[(6, "status")]
    assert stranger.email in messages[(7, "assignedTo")]
    assert (report.created, report.updated, report.skipped, report.error_count) == (2, 0, 7, 9)
    assert sorted(Lead.objects.values_list("name", flat=True)) == ["Good One", "Good Two"]
    assert Lead.objects.get(name="Good Two").segment == "warm"


@pytest.mark.django_db
def test_row_numbers_count_records_not_lines(owner):
    content = make_csv("name,phone,inquiry", f'A,{phone(1)},"three\nline\ninquiry"', "B,not a phone,x")
    report = import_csv(owner, content)
    assert [(e["row"], e["field"]) for e in report.errors] == [(3, "phone")]


@pytest.mark.django_db
def test_duplicates_in_the_file_and_in_the_database_update_instead_of_duplicating(owner):
    LeadFactory(account=owner.account, phone=e164(1), name="Old Name", status=Lead.Status.CONTACTED, email="old@x.in")
    content = make_csv(
        "name,phone,email,status,source",
        "New Name,+91 98765 00001,,,Fair",  # updates the existing lead
        f"Ben,{phone(2)},ben@x.in,,",  # creates
        f"Ben Again,0{phone(2)},,qualified,Web",  # same phone written differently: updates
        f"Ben Last,+91{phone(2).replace(' ', '')},,,",  # and again: later rows win
        f"Cara,{phone(3)},,,",
    )
    report = import_csv(owner, content)
    assert (report.created, report.updated, report.skipped) == (2, 3, 0)
    assert Lead.objects.filter(account=owner.account).count() == 3
    old = Lead.objects.get(phone=e164(1))
    assert (old.name, old.status, old.email, old.source) == ("New Name", "contacted", "old@x.in", "Fair")
    ben = Lead.objects.get(phone=e164(2))
    assert (ben.name, ben.email, ben.status, ben.source) == ("Ben Last", "ben@x.in", "qualified", "Web")
    assert Lead.objects.get(phone=e164(3)).status == "pending"


@pytest.mark.django_db
def test_empty_cells_never_erase_existing_values(owner, agent):
    tag = TagFactory(account=owner.account, name="existing")
    lead = LeadFactory(
        account=owner.account,
        phone=e164(1),
        name="Asha",
        email="asha@x.in",
        source="Expo",
        inquiry="Pricing",
        segment="hot",
        status="qualified",
        assigned_to=agent,
        notes="VIP",
        tags=[tag],
    )
    before = lead.updated_at
    report = import_csv(
        owner,
        make_csv("name,phone,email,source,inquiry,segment,status,tags,assignedTo,notes", f"Asha R,{phone(1)},,,,,,,,"),
    )
    assert (report.created, report.updated) == (0, 1)
    lead.refresh_from_db()
    assert (lead.name, lead.email, lead.source, lead.inquiry) == ("Asha R", "asha@x.in", "Expo", "Pricing")
    assert (lead.segment, lead.status, lead.assigned_to, lead.notes) == ("hot", "qualified", agent, "VIP")
    assert list(lead.tags.all()) == [tag]
    assert lead.updated_at > before


@pytest.mark.django_db
def test_importing_the_same_file_again_counts_updates_but_rewrites_nothing(owner):
    content = make_csv("name,phone,email,status", f"A,{phone(1)},a@x.in,contacted", f"B,{phone(2)},,")
    assert import_csv(owner, content).created == 2
    stamps = dict(Lead.objects.values_list("phone", "updated_at"))
    report = import_csv(owner, content)
    assert (report.created, report.updated, report.skipped) == (0, 2, 0)
    assert dict(Lead.objects.values_list("phone", "updated_at")) == stamps
    report = import_csv(owner, make_csv("name,phone,status", f"A,{phone(1)},lost"))
    assert report.updated == 1
    changed = Lead.objects.get(phone=e164(1))
    assert changed.status == "lost" and changed.updated_at > stamps[e164(1)]


@pytest.mark.django_db
def test_tags_are_created_once_matched_case_insensitively_and_added(owner):
    vip = TagFactory(account=owner.account, name="VIP")
    kept = TagFactory(account=owner.account, name="kept")
    LeadFactory(account=owner.account, phone=e164(1), tags=[kept])
    content = make_csv(
        "name,phone,tags",
        f"A,{phone(1)},vip; Delhi ;;delhi",
        f"B,{phone(2)},Delhi;new-tag",
        f"C,{phone(3)},",
    )
    report = import_csv(owner, content)
    assert (report.created, report.updated) == (2, 1)
    assert sorted(Tag.objects.filter(account=owner.account).values_list("name", flat=True)) == [
        "Delhi",
        "VIP",
        "kept",
        "new-tag",
    ]
    assert Tag.objects.get(name="VIP") == vip
    tags_of = {lead.phone: sorted(t.name for t in lead.tags.all()) for lead in Lead.objects.all()}
    assert tags_of == {e164(1): ["Delhi", "VIP", "kept"], e164(2): ["Delhi", "new-tag"], e164(3): []}
    # Importing again links nothing twice.
    import_csv(owner, content)
    assert Lead.tags.through.objects.count() == 5


@pytest.mark.django_db
def test_a_tag_too_long_is_a_row_error(owner):
    report = import_csv(owner, make_csv("name,phone,tags", f"A,{phone(1)},{'t' * 51}"))
    assert [(e["row"], e["field"]) for e in report.errors] == [(2, "tags")]
    assert Tag.objects.count() == 0


@pytest.mark.django_db
def test_assignee_by_email_of_the_same_account_only(owner, agent, outsider):
    inactive = UserFactory(account=owner.account, email="gone@acme.test", is_active=False)
    content = make_csv(
        "name,phone,assignedTo",
        f"A,{phone(1)}, {agent.email.title()} ",
        f"B,{phone(2)},{outsider.email}",
        f"C,{phone(3)},{inactive.email}",
    )
    report = import_csv(owner, content)
    assert [(e["row"], e["field"]) for e in report.errors] == [(3, "assignedTo"), (4, "assignedTo")]
    assert Lead.objects.get(phone=e164(1)).assigned_to == agent
    assert Lead.objects.count() == 1


@pytest.mark.django_db
def test_html_is_stripped_and_over_long_text_is_a_row_error(owner):
    content = make_csv(
        "name,phone,inquiry,source,notes",
        f"<b>Asha</b><script>alert(1)</script>,{phone(1)},&lt;script&gt;x&lt;/script&gt;Hi,<i>Expo</i>,a &amp; b",
        f"<script>only</script>,{phone(2)},,,",
        f"{'n' * 201},{phone(3)},,,",
        f"Long,{phone(4)},{'i' * 5001},,",
        f"Src,{phone(5)},,{'s' * 101},",
        f"Drop; Table,{phone(6)},'; DROP TABLE leads_lead; --,,",
    )
    report = import_csv(owner, content)
    assert [(e["row"], e["field"]) for e in report.errors] == [(3, "name"), (4, "name"), (5, "inquiry"), (6, "source")]
    lead = Lead.objects.get(phone=e164(1))
    assert (lead.name, lead.inquiry, lead.source, lead.notes) == ("Asha", "Hi", "Expo", "a & b")
    assert Lead.objects.get(phone=e164(6)).inquiry == "'; DROP TABLE leads_lead; --"


def test_the_plain_text_shortcut_cleans_exactly_like_clean_text():
    rng = random.Random(7)
    alphabet = "ab <>&;\"'=+-@\t\n\r\x00éü€\u00a0\u200b日本" + "".join(chr(c) for c in range(0x20, 0x7F))
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert imports._clean(text) == clean_text(text), repr(text)


def test_the_plain_email_shortcut_accepts_only_what_validate_email_accepts():
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    def django_says(email: str) -> bool:
        try:
            validate_email(email)
        except ValidationError:
            return False
        return True

    rng = random.Random(11)
    pieces = ["a", "b", "z", "0", "9", ".", "-", "_", "+", "%", "@", "é", "x", "co", "in", "--", "..", "'", " "]
    samples = ["asha.rao@example.com", "a@b.co", "a.@b.co", ".a@b.co", "a@-b.co", "a@b-.co", "a@b.c", "a@b.c0m"]
    samples += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))) for _ in range(20000)]
    samples += [f"{'u' * 64}@{'d' * 63}.{'t' * 63}", f"u@{'d' * 64}.com"]
    for email in samples:
        assert imports._valid_email(email) == django_says(email), email


def test_new_ids_are_random_version_4_uuids():
    ids = imports._new_ids(500)
    assert len(set(ids)) == 500
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, value)


@pytest.mark.django_db
def test_more_than_1000_errors_are_counted_but_not_all_listed(owner):
    content = make_csv("name,phone", *(f"Bad {i},123" for i in range(1005)), f"Good,{phone(1)}")
    report = import_csv(owner, content)
    data = report.as_data()
    assert len(data["errors"]) == 1000
    assert (data["errorCount"], data["errorsTruncated"], data["skipped"], data["created"]) == (1005, True, 1005, 1)
    assert data["errors"][-1]["row"] == 1001


# --- Tenancy, roles, transactions, cost ------------------------------------------------


@pytest.mark.django_db
def test_an_import_never_touches_another_accounts_lead_with_the_same_phone(owner, outsider):
    theirs = LeadFactory(account=outsider.account, phone=e164(1), name="Theirs", email="t@globex.test")
    report = import_csv(owner, make_csv("name,phone,email,tags", f"Ours,{phone(1)},o@acme.test,shared"))
    assert (report.created, report.updated) == (1, 0)
    theirs.refresh_from_db()
    assert (theirs.name, theirs.email, list(theirs.tags.all())) == ("Theirs", "t@globex.test", [])
    ours = Lead.objects.get(account=owner.account)
    assert (ours.phone, ours.name) == (e164(1), "Ours")
    assert Tag.objects.get().account == owner.account


@pytest.mark.django_db
def test_agents_cannot_import_and_anonymous_clients_must_log_in(agent, agent_client, api_client):
    content = make_csv("name,phone", f"A,{phone(1)}")
    response = upload(agent_client, content)
    assert response.status_code == 403
    assert response.json()["error"] == "PERMISSION_DENIED"
    assert upload(api_client, content).status_code == 401
    with pytest.raises(PermissionDenied):
        lead_import_csv(account=agent.account, user=agent, data=content)
    assert Lead.objects.count() == 0


@pytest.mark.django_db
def test_an_admin_cannot_import_into_another_account(owner, other_account):
    with pytest.raises(PermissionDenied):
        lead_import_csv(account=other_account, user=owner, data=make_csv("name,phone", f"A,{phone(1)}"))


@pytest.mark.django_db
def test_the_import_route_answers_with_and_without_a_trailing_slash(owner_client):
    content = make_csv("name,phone", f"A,{phone(1)}")
    assert upload(owner_client, content).status_code == 200
    response = owner_client.post(f"{IMPORT}/", {"file": SimpleUploadedFile("a.csv", content)}, format="multipart")
    assert response.status_code == 200
    assert response.json()["data"]["updated"] == 1


def _rows(start: int, count: int) -> list[str]:
    return [
        f"Lead {i},{phone(i)},lead{i}@x.in,Expo,hot,pending,tag-{i % 3};common,notes {i}"
        for i in range(start, start + count)
    ]


@pytest.mark.django_db
def test_the_number_of_queries_does_not_grow_with_the_rows(owner):
    header = "name,phone,email,source,segment,status,tags,notes"
    counts = []
    for start, size in ((0, 50), (1000, 500)):
        account = AccountFactory()
        admin = UserFactory(account=account, role=User.Role.ADMIN)
        # Half of them already exist, so both paths (insert and update) run.
        LeadFactory.create_batch(size // 2, account=account, phone=factory_phones(start, size // 2))
        content = make_csv(header, *_rows(start, size))
        with CaptureQueriesContext(connection) as queries:
            report = lead_import_csv(account=account, user=admin, data=content)
        assert (report.created, report.updated, report.skipped) == (size - size // 2, size // 2, 0)
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
    assert counts[0] <= 20


@pytest.mark.django_db
def test_a_new_accounts_import_reads_its_existing_leads_once_per_chunk_whatever_the_statistics(owner):
    """The scenario of a new customer's first large import: the table's statistics
    predate the account, so the planner thinks it has one lead, and any (account_id, …)
    index looks as good as the (account_id, phone) one. Every statement of the import
    must still read each of the account's leads at most about once per chunk. On
    PostgreSQL the lead rows the whole import read are counted: a lookup per phone read
    all of them for every phone (105 s for 10,000 phones against 86,000 leads), and so
    did the upsert's status lookup for rows with an empty status cell (35 s)."""
    other = AccountFactory()
    Lead.objects.bulk_create([Lead(account=other, name="x", phone=f"+9170{i:08d}") for i in range(2000)])
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Lead._meta.db_table}")  # statistics without the importing account
    existing = 1500
    Lead.objects.bulk_create(
        [Lead(account=owner.account, name="x", phone=e164(i), status="qualified") for i in range(existing)]
    )
    # Half the rows leave status empty: an existing lead keeps its own, a new one is pending.
    rows = [
        f"Lead {i},{phone(i)},lead{i}@x.in,Expo,hot,{'' if i % 2 else 'contacted'},tag-{i % 3}" for i in range(3000)
    ]

    read_before = lead_rows_read()
    report = import_csv(owner, make_csv("name,phone,email,source,segment,status,tags", *rows))
    read = lead_rows_read() - read_before

    assert (report.created, report.updated, report.skipped) == (1500, 1500, 0)
    statuses = dict(Lead.objects.filter(account=owner.account).values_list("phone", "status"))
    assert len(statuses) == 3000
    assert {statuses[e164(i)] for i in range(1, existing, 2)} == {"qualified"}
    assert {statuses[e164(i)] for i in range(existing + 1, 3000, 2)} == {"pending"}
    assert {statuses[e164(i)] for i in range(0, 3000, 2)} == {"contacted"}
    if connection.vendor == "postgresql":
        chunks = 2  # 1,000 rows, then 2,000
        assert read <= chunks * (existing + 3000), read


@pytest.mark.django_db(transaction=True)
def test_an_import_growing_a_table_that_looked_empty_checks_each_tag_link_by_index(owner, monkeypatch):
    """After its leads were deleted and the table vacuumed, the lead table's statistics
    say it is empty. PostgreSQL plans the tag links' foreign-key check (a lead by id)
    the first time it runs, while the table holds only the first chunk: a sequential
    scan, cheaper than the index for a page of rows. The plan is kept for the session,
    so every later link read the whole growing table: 220 s for a 100,000-row import
    on such a database. The import refreshes the statistics once it has outgrown them,
    and the check uses the primary key again. The chunks and that threshold are scaled
    down here; the constraints are checked per statement, as per-chunk commits would,
    so the rows the import read can be counted in one transaction."""
    monkeypatch.setattr(imports, "_FIRST_CHUNK_ROWS", 10)
    monkeypatch.setattr(imports, "ANALYZE_MIN_CREATED", 200)
    postgres = connection.vendor == "postgresql"
    if postgres:
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {Lead._meta.db_table}")  # empty, and its statistics say so
    source = tagged_leads_source(6000)

    with transaction.atomic():
        if postgres:
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        read_before = lead_rows_read()
        report = imports.lead_import_stream(account=owner.account, stream=source.stream, chunk_rows=500)
        read = lead_rows_read() - read_before

    assert (report.created, report.updated, report.skipped) == (6000, 0, 0)
    assert Lead.tags.through.objects.filter(lead__account=owner.account).count() == 6000
    if postgres:
        # A sequential scan per link read 18,000,000; by the primary key, a few per link
        # plus the chunks before the statistics were refreshed.
        assert read <= 300_000, read


@pytest.mark.django_db
def test_during_an_import_the_gil_comes_back_quickly_and_the_collector_waits_and_both_are_restored(owner, monkeypatch):
    """The parsing thread and the writes share the GIL: during an import the switch
    interval is short, so the writing thread is not kept waiting 5 ms after each
    statement, and automatic garbage collection is paused, so its passes over every
    live object do not hold the GIL while the server waits. Afterwards both are what
    they were, even when the import fails, and two imports at once restore them only
    when the last one ends; an application that had paused the collector keeps it paused."""
    before = sys.getswitchinterval()
    assert gc.isenabled()
    during = []
    real_write = imports.LeadWriter.write

    def write(self, chunk):
        during.append((sys.getswitchinterval(), gc.isenabled()))
        return real_write(self, chunk)

    monkeypatch.setattr(imports.LeadWriter, "write", write)
    report = import_csv(owner, make_csv("name,phone", *[f"Lead {i},{phone(i)}" for i in range(1500)]))
    assert report.created == 1500
    assert len(during) == 2  # chunks of 1,000 then 2,000 rows
    assert max(interval for interval, _ in during) <= 0.0005 < before
    assert not any(collecting for _, collecting in during)
    assert (sys.getswitchinterval(), gc.isenabled()) == (before, True)

    with pytest.raises(ValidationFailed):
        import_csv(owner, make_csv("name,phone", "A,98765 00001", "B," + "9" * 200_000))  # csv: field too large
    assert (sys.getswitchinterval(), gc.isenabled()) == (before, True)

    with imports._bulk_mode():
        with imports._bulk_mode():
            assert sys.getswitchinterval() <= 0.0005
            assert not gc.isenabled()
        assert sys.getswitchinterval() <= 0.0005  # the other import still runs
        assert not gc.isenabled()
    assert (sys.getswitchinterval(), gc.isenabled()) == (before, True)

    gc.disable()
    try:
        with imports._bulk_mode():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_rejected_email_does_not_keep_its_callers_data_alive():
    """validate_email's ValidationError holds itself, so only the collector frees it, and
    its traceback held the frames that raised it, the parser's with them: a chunk's rows
    lived until the next collection. Without its traceback, the caller's data goes as
    soon as the caller returns."""

    class Rows:
        pass

    def parse(rows):
        return imports._valid_email("bad@@example.com")

    gc.disable()
    try:
        rows = Rows()
        freed = weakref.ref(rows)
        assert parse(rows) is False
        del rows
        assert freed() is None
    finally:
        gc.enable()


@pytest.mark.django_db
def test_with_the_collector_paused_each_chunks_cyclic_garbage_is_still_freed(owner, monkeypatch):
    """Rejecting an unusual email address goes through Django's validate_email, whose
    ValidationError is a reference cycle (its error_list holds it). With automatic
    collection paused, the parsing thread collects after each chunk, so those objects
    do not pile up over a large import: memory stays bounded by the chunk."""
    rejected = []  # weak references: counting them must not keep them alive
    real_validate_email = imports.validate_email

    def validate_email(value):
        try:
            real_validate_email(value)
        except DjangoValidationError as exc:
            rejected.append(weakref.ref(exc))
            raise

    alive = []
    real_write = imports.LeadWriter.write

    def write(self, chunk):
        alive.append(sum(1 for ref in rejected if ref() is not None))
        return real_write(self, chunk)

    monkeypatch.setattr(imports, "validate_email", validate_email)
    monkeypatch.setattr(imports.LeadWriter, "write", write)
    rows = [f"Lead {i},{phone(i)}," + ("bad@@example.com" if i % 2 else "") for i in range(8000)]
    report = imports.lead_import_stream(
        account=owner.account, stream=io.BytesIO(make_csv("name,phone,email", *rows)), chunk_rows=1000
    )
    assert report.error_count == 4000
    assert len(alive) == 8  # each chunk has 500 good rows
    # At most the rejected rows of the chunks in flight; without the collections the last
    # chunk's write saw all 3,500 of the chunks before it.
    assert max(alive) <= 1500, alive


@pytest.mark.django_db(transaction=True)
def test_the_statistics_refresh_never_waits_for_whoever_holds_the_tables_maintenance_lock(owner, monkeypatch):
    """A VACUUM or ANALYZE of the lead table (or another import's refresh) holds the
    lock an ANALYZE needs: the import skips its refresh instead of queueing behind it
    (the other one refreshes the statistics itself). Waiting would stall the import for
    as long as a VACUUM runs, and could deadlock with an import holding row locks. Here
    another session holds that lock all along, and lock_timeout turns a wait into an
    error."""
    monkeypatch.setattr(imports, "ANALYZE_MIN_CREATED", 200)
    source = tagged_leads_source(1500)
    holder = None
    if connection.vendor == "postgresql":
        import psycopg

        params = connection.get_connection_params()
        holder = psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"})
        holder.execute(f"LOCK TABLE {Lead._meta.db_table} IN SHARE UPDATE EXCLUSIVE MODE")
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
    analyzed = []
    real_refresh = imports.LeadWriter._refresh_statistics

    def refresh(self, cursor):
        before = self.created_since_analyze
        real_refresh(self, cursor)
        analyzed.append(self.created_since_analyze < before)

    monkeypatch.setattr(imports.LeadWriter, "_refresh_statistics", refresh)
    try:
        report = imports.lead_import_stream(account=owner.account, stream=source.stream, chunk_rows=500)
    finally:
        if holder is not None:
            holder.close()
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")

    assert (report.created, report.updated, report.skipped) == (1500, 0, 0)
    assert Lead.tags.through.objects.filter(lead__account=owner.account).count() == 1500
    if connection.vendor == "postgresql":
        assert True in analyzed  # the refresh was reached (and skipped, not waited for)


def tagged_leads_source(count: int) -> imports.CsvSource:
    """A file of ``count`` new leads, each with one of three tags (a link per lead)."""
    rows = [f"Lead {i},{phone(i)},tag-{i % 3}" for i in range(count)]
    return imports.CsvSource.from_bytes(make_csv("name,phone,tags", *rows))


def lead_rows_read() -> int:
    """Lead rows this transaction has read so far (PostgreSQL; 0 elsewhere), by
    sequential and index scans."""
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
            "WHERE relname = %s",
            [Lead._meta.db_table],
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_phones_another_writer_added_since_the_lookup_are_updated_not_duplicated(owner, monkeypatch):
    """On PostgreSQL, between the lookup of a chunk's existing phones and the COPY of
    the new ones, another writer may add one of them: the COPY fails on the unique
    constraint and the whole chunk goes through the upsert, which inserts the new leads
    (pending when their status cell is empty) and updates the others. (SQLite has no
    lookup: every chunk takes the upsert, and answers the same.)"""
    lead = LeadFactory(account=owner.account, phone=e164(1), name="Before", status="qualified")
    real_init = imports.LeadWriter.__init__

    def lookup_misses(self, account):
        real_init(self, account)
        self.find_existing = self.find_existing.replace("WHERE", "WHERE false AND")  # as if added since

    monkeypatch.setattr(imports.LeadWriter, "__init__", lookup_misses)
    report = import_csv(
        owner,
        make_csv(
            "name,phone,status,tags", f"After,{phone(1)},,vip", f"New,{phone(2)},,vip", f"Won,{phone(3)},converted,"
        ),
    )

    assert (report.created, report.updated) == (2, 1)
    leads = {lead.phone: lead for lead in Lead.objects.filter(account=owner.account)}
    assert len(leads) == 3
    assert (leads[e164(1)].pk, leads[e164(1)].name, leads[e164(1)].status) == (lead.pk, "After", "qualified")
    assert (leads[e164(2)].name, leads[e164(2)].status) == ("New", "pending")
    assert leads[e164(3)].status == "converted"
    assert [t.name for t in leads[e164(1)].tags.all()] == ["vip"] == [t.name for t in leads[e164(2)].tags.all()]


def factory_phones(start: int, count: int):
    import factory

    return factory.Iterator([e164(i) for i in range(start, start + count)])


@pytest.mark.django_db(transaction=True)
def test_a_failure_mid_import_leaves_nothing_written(owner, monkeypatch):
    LeadFactory(account=owner.account, phone=e164(1), name="Before")
    # The links are staged by COPY on PostgreSQL, by executemany on SQLite.
    for method in ("_copy", "_fill"):
        real = getattr(imports.LeadWriter, method)

        def fill_then_fail(self, cursor, table, columns, rows, real=real):
            if table == self.STAGE_TAGS:  # after the leads were upserted
                raise IntegrityError("simulated failure while linking tags")
            return real(self, cursor, table, columns, rows)

        monkeypatch.setattr(imports.LeadWriter, method, fill_then_fail)
    content = make_csv("name,phone,tags", f"After,{phone(1)},x", f"New,{phone(2)},y")
    with pytest.raises(IntegrityError):
        import_csv(owner, content)
    assert list(Lead.objects.values_list("name", flat=True)) == ["Before"]
    assert Tag.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_failure_mid_import_through_the_api_is_a_500_and_writes_nothing(owner, owner_client, monkeypatch):
    def fail(self, chunk):
        raise IntegrityError("simulated")

    monkeypatch.setattr(imports.LeadWriter, "write", fail)
    owner_client.raise_request_exception = False
    response = upload(owner_client, make_csv("name,phone", f"A,{phone(1)}"))
    assert response.status_code == 500
    assert response.json()["error"] == "SERVER_ERROR"
    assert Lead.objects.count() == 0


# --- Background jobs -------------------------------------------------------------------


@pytest.fixture
def sync_tasks(monkeypatch):
    """django-q2 runs tasks in the calling process (its settings are read once, at
    import, so the flag is set on its Conf)."""
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def small_jobs(settings, monkeypatch):
    settings.LEAD_IMPORT_SYNC_MAX_ROWS = 5
    monkeypatch.setattr(imports, "CHUNK_ROWS", 4)


def job_url(job_id) -> str:
    return f"{IMPORT}/{job_id}"


@pytest.mark.django_db
def test_a_large_file_runs_as_a_background_job_with_progress_and_report(
    owner, owner_client, sync_tasks, small_jobs, django_capture_on_commit_callbacks, monkeypatch
):
    progress = []
    real_counts = imports._job_counts
    monkeypatch.setattr(
        imports, "_job_counts", lambda report: progress.append(report.processed_rows) or real_counts(report)
    )
    LeadFactory(account=owner.account, phone=e164(3), name="Existing")
    rows = [f"Lead {i},{phone(i)},t{i % 2}" for i in range(10)]
    rows[5] = "Bad,123,x"  # row 7
    rows[8] = f"Lead 1 again,{phone(1)},t9"  # row 10: a duplicate of row 3
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(owner_client, make_csv("name,phone,tags", *rows))
    assert response.status_code == 202, response.content
    data = response.json()["data"]
    assert data["status"] == "queued"
    assert data["totalRows"] == 10
    job_id = data["jobId"]

    response = owner_client.get(job_url(job_id))
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    job = body["data"]
    assert job["jobId"] == job_id
    assert (job["status"], job["totalRows"], job["processedRows"], job["progress"]) == ("completed", 10, 10, 100)
    assert (job["created"], job["updated"], job["skipped"]) == (7, 2, 1)
    assert job["errors"] == [{"row": 7, "field": "phone", "message": "'123' is not a valid phone number."}]
    assert (job["errorCount"], job["errorsTruncated"], job["errorMessage"]) == (1, False, "")
    assert job["startedAt"] and job["finishedAt"]
    assert progress == [4, 8, 10, 10]  # after each chunk of 4, then the final report
    assert Lead.objects.filter(account=owner.account).count() == 8
    assert Lead.objects.get(phone=e164(1)).name == "Lead 1 again"
    assert bytes(LeadImportJob.objects.get(pk=job_id).data) == b""  # the file is not kept


@pytest.mark.django_db
def test_a_duplicate_delivery_of_the_job_does_nothing(owner, small_jobs):
    content = make_csv("name,phone", *(f"Lead {i},{phone(i)}" for i in range(8)))
    outcome = lead_import_submit(account=owner.account, user=owner, data=content)
    job = outcome.job
    assert job is not None and outcome.report is None
    assert lead_import_job_run(job_id=job.pk) is True
    assert lead_import_job_run(job_id=job.pk) is False
    job.refresh_from_db()
    assert (job.status, job.created_count, job.updated_count) == ("completed", 8, 0)

    # A second delivery while the first one runs (fresh heartbeat) does nothing either.
    running = LeadImportJob.objects.create(
        account=owner.account, user=owner, data=content, total_rows=8, status="running", heartbeat_at=job.finished_at
    )
    running.heartbeat_at = running.created_at
    running.save()
    assert lead_import_job_run(job_id=running.pk) is False


@pytest.mark.django_db
def test_a_job_whose_worker_died_is_taken_over_after_the_retry_period(owner, small_jobs):
    from datetime import timedelta

    from django.utils import timezone

    content = make_csv("name,phone", *(f"Lead {i},{phone(i)}" for i in range(8)))
    # The dead worker had committed the first chunk (rows 2-5) and its progress.
    for i in range(4):
        LeadFactory(account=owner.account, phone=e164(i), name=f"Lead {i}")
    job = LeadImportJob.objects.create(
        account=owner.account,
        user=owner,
        data=content,
        total_rows=8,
        status="running",
        processed_rows=4,
        created_count=4,
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )
    assert lead_import_job_run(job_id=job.pk) is True
    job.refresh_from_db()
    assert (job.status, job.processed_rows, job.created_count, job.updated_count) == ("completed", 8, 8, 0)
    assert Lead.objects.count() == 8


@pytest.mark.django_db
def test_a_job_that_fails_is_marked_failed_with_what_was_done(owner, small_jobs, monkeypatch):
    content = make_csv("name,phone", *(f"Lead {i},{phone(i)}" for i in range(8)))
    job = lead_import_submit(account=owner.account, user=owner, data=content).job
    real_write = imports.LeadWriter.write
    calls = []

    def write_then_fail(self, chunk):
        calls.append(chunk)
        if len(calls) == 2:
            raise IntegrityError("simulated")
        return real_write(self, chunk)

    monkeypatch.setattr(imports.LeadWriter, "write", write_then_fail)
    assert lead_import_job_run(job_id=job.pk) is True
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error_message == (
        "The import stopped on an unexpected error. 4 of 8 rows were imported before it stopped."
    )
    assert (job.processed_rows, job.created_count) == (4, 4)
    assert Lead.objects.count() == 4  # the first chunk committed with its progress; the second not at all


@pytest.mark.django_db
def test_import_jobs_are_private_to_their_account(owner, owner_client, outsider_client, agent_client, small_jobs):
    job = lead_import_submit(
        account=owner.account, user=owner, data=make_csv("name,phone", *(f"L{i},{phone(i)}" for i in range(6)))
    ).job
    assert owner_client.get(job_url(job.pk)).status_code == 200
    response = outsider_client.get(job_url(job.pk))
    assert response.status_code == 404
    assert response.json()["error"] == "NOT_FOUND"
    assert outsider_client.get(job_url(uuid.uuid4())).status_code == 404
    assert agent_client.get(job_url(job.pk)).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_a_real_qcluster_worker_runs_the_job(owner, owner_client, settings, monkeypatch):
    """The job goes through the real broker to a `manage.py qcluster` process on the
    test database, on a queue of this test's own."""
    settings.LEAD_IMPORT_SYNC_MAX_ROWS = 100
    queue_name = f"heroshhi-import-test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setattr(Conf, "CLUSTER_NAME", queue_name)
    monkeypatch.setattr(Conf, "SYNC", False)
    rows = [f"Lead {i},{phone(i)},worker" for i in range(150)] + ["Bad,1,x"]
    response = upload(owner_client, make_csv("name,phone,tags", *rows))
    assert response.status_code == 202, response.content
    job_id = response.json()["data"]["jobId"]

    worker = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=PROJECT_ROOT,
        env=server_env(
            DJANGO_SETTINGS_MODULE="leads.tests.import_worker_settings",
            HEROSHHI_TEST_QUEUE=queue_name,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        job = None
        while time.monotonic() < deadline:
            job = owner_client.get(job_url(job_id)).json()["data"]
            if job["status"] in ("completed", "failed") or worker.poll() is not None:
                break
            time.sleep(0.3)
    finally:
        worker.terminate()
        try:
            output, _ = worker.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()
    assert job is not None and job["status"] == "completed", f"{job}\n--- worker output ---\n{output}"
    assert (job["created"], job["updated"], job["skipped"], job["progress"]) == (150, 0, 1, 100)
    assert job["errors"][0]["row"] == 152
    assert Lead.objects.filter(account=owner.account, tags__name="worker").count() == 150


# --- Export ----------------------------------------------------------------------------


def read_export(response) -> list[dict]:
    assert response.status_code == 200, getattr(response, "content", b"")
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


def test_csv_safe_neutralises_formula_cells():
    for dangerous in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x","y")'):
        assert csv_safe(dangerous) == "'" + dangerous
    for harmless in ("Asha", "919876543210", "", " =not at start", "a=b"):
        assert csv_safe(harmless) == harmless
    assert csv_safe(None) == ""


@pytest.mark.django_db
def test_a_formula_cell_is_stored_as_typed_and_exported_with_a_leading_quote(owner, owner_client):
    formula = '=HYPERLINK("http://evil.test","click")'
    content = make_csv("name,phone,source,notes", f'"{formula.replace(chr(34), chr(34) * 2)}",+91 98765 00001,@cmd,-1')
    assert import_csv(owner, content).created == 1
    lead = Lead.objects.get()
    assert (lead.name, lead.source, lead.notes) == (formula, "@cmd", "-1")

    [row] = read_export(owner_client.get(EXPORT))
    assert row["name"] == "'" + formula
    assert (row["source"], row["notes"]) == ("'@cmd", "'-1")
    assert row["phone"] == "919876500001"  # digits with the country code: not a formula, not quoted


@pytest.mark.django_db
def test_the_export_streams_the_visible_leads_and_imports_back(owner, agent, owner_client, agent_client, outsider):
    tag = TagFactory(account=owner.account, name="vip")
    LeadFactory(account=owner.account, phone=e164(1), name="Mine", assigned_to=agent, tags=[tag], segment="hot")
    LeadFactory(account=owner.account, phone=e164(2), name="Open")
    LeadFactory(account=owner.account, phone=e164(3), name="Owners", assigned_to=owner)
    LeadFactory(account=outsider.account, phone=e164(4), name="Theirs")

    rows = read_export(owner_client.get(EXPORT))
    assert [r["name"] for r in rows] == ["Mine", "Open", "Owners"]
    assert rows[0]["tags"] == "vip" and rows[0]["assignedTo"] == agent.email and rows[0]["segment"] == "hot"
    assert [r["name"] for r in read_export(agent_client.get(f"{EXPORT}/", HTTP_ACCEPT="text/csv"))] == [
        "Mine",
        "Open",
    ]

    # The export is a valid import: every row updates its lead, nothing changes or duplicates.
    content = b"".join(owner_client.get(EXPORT).streaming_content)
    report = import_csv(owner, content)
    assert (report.created, report.updated, report.skipped) == (0, 3, 0)
    assert Lead.objects.filter(account=owner.account).count() == 3
    assert list(Lead.objects.get(phone=e164(1)).tags.all()) == [tag]


@pytest.mark.django_db
def test_the_export_needs_a_login(api_client):
    assert api_client.get(EXPORT).status_code == 401


@pytest.mark.django_db
def test_submitting_a_small_file_imports_it_at_once(owner):
    outcome = lead_import_submit(account=owner.account, user=owner, data=make_csv("name,phone", f"A,{phone(1)}"))
    assert outcome.job is None and outcome.report.created == 1
    with pytest.raises(ValidationFailed):
        lead_import_submit(account=owner.account, user=owner, data=b"")
