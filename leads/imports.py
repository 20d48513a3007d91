"""CSV lead import (and the CSV export that round-trips it).

An upload is read as UTF-8 (with or without a BOM) or, failing that, as Excel's
cp1252; the delimiter (comma, semicolon or tab) is read off the header line and the
headers are matched case-insensitively. Every data row is validated on its own: a bad
row is reported as ``{row, field, message}`` with the row number a spreadsheet shows
(the header is row 1) and skipped, every good row is imported. Rows are keyed by phone:
a phone already in the account, or earlier in the file, updates that lead (later rows
win, empty cells never erase) and never duplicates it.

The writes are set-based, so the number of queries does not grow with the rows: per
chunk of rows, on PostgreSQL one lookup of the phones that exist, one COPY of the new
leads straight into the lead table, and for the others a staging temp table filled by
one COPY and one ``INSERT … SELECT … ON CONFLICT (account_id, phone) DO UPDATE``
(SQLite: every lead through the staging table, filled by one executemany); then one
statement for new tags and at most two for the tag links (see LeadWriter). On
PostgreSQL an import that has grown the lead table fourfold also refreshes its
statistics (two statements; LeadWriter._refresh_statistics). Parsing
(phone numbers are the costly part) and rendering the COPY text run in a thread
beside the database writes, one chunk ahead.

Files with more than ``LEAD_IMPORT_SYNC_MAX_ROWS`` data rows become a
``LeadImportJob`` that a django-q2 worker runs chunk by chunk (``leads.tasks``).
"""

import codecs
import contextlib
import csv
import gc
import io
import logging
import os
import queue
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any, BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, models, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Account, User
from heroshhi.errors import DomainError, NotFound, PermissionDenied, ValidationFailed
from heroshhi.pgcopy import VARYING, copy_escape, copy_line_format, copy_lines
from heroshhi.text import clean_text
from leads.models import Lead, LeadImportJob, Tag
from leads.phones import InvalidPhone, display_phone, to_e164
from leads.selectors import lead_scope
from leads.services import DEFAULT_TAG_COLOR

logger = logging.getLogger(__name__)

CHUNK_ROWS = 10_000
_FIRST_CHUNK_ROWS = 1000
MAX_REPORTED_ERRORS = 1000
# The same limits as the lead API's fields.
INQUIRY_MAX_LENGTH = 5000
NOTES_MAX_LENGTH = 10000
_PHONE_CACHE_LIMIT = 200_000
_COPY_BLOCK_ROWS = 1000
# PostgreSQL: an import that has created this many leads, and so grown the lead table to
# STATISTICS_GROWTH times the rows its statistics describe, refreshes them (see
# LeadWriter._refresh_statistics).
ANALYZE_MIN_CREATED = 2000
STATISTICS_GROWTH = 4
_SAMPLE_BYTES = 64 * 1024
_BOM = codecs.BOM_UTF8

# Header (lower case, without spaces, underscores or dashes) → the field named in errors.
COLUMNS = {
    "name": "name",
    "phone": "phone",
    "email": "email",
    "source": "source",
    "inquiry": "inquiry",
    "segment": "segment",
    "status": "status",
    "tags": "tags",
    "assignedto": "assignedTo",
    "notes": "notes",
}
REQUIRED_COLUMNS = ("name", "phone")
SEGMENTS = frozenset(Lead.Segment.values)
STATUSES = frozenset(Lead.Status.values)

# clean_text leaves text without these characters as it is (apart from the strip);
# checked over every code point. Skipping nh3 for plain cells saves ~10 µs a cell.
_NEEDS_CLEANING = re.compile(r"[<&\x00\r]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Addresses of this shape pass Django's validate_email (a subset of its user and domain
# patterns); anything else is checked by validate_email itself, which costs ~10 µs.
_PLAIN_EMAIL = re.compile(
    r"[a-z0-9_%+\-]+(?:\.[a-z0-9_%+\-]+)*@(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)


class FileTooLarge(DomainError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"
    default_message = "The file is too large."


def _file_error(message: str) -> ValidationFailed:
    return ValidationFailed(message, errors={"file": [message]})


# --- The report ------------------------------------------------------------------------


@dataclass
class ImportReport:
    """What an import did: leads created, rows that updated a lead, rows skipped, and
    the first MAX_REPORTED_ERRORS row errors (``error_count`` counts them all)."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0
    processed_rows: int = 0

    @property
    def errors_truncated(self) -> bool:
        return self.error_count > len(self.errors)

    def add_error(self, row: int, field_name: str, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"row": row, "field": field_name, "message": message})

    def as_data(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "skipped": self.skipped,
            "errors": self.errors,
            "errorCount": self.error_count,
            "errorsTruncated": self.errors_truncated,
        }


@dataclass
class ImportOutcome:
    """An upload's result: the report of an import done in the request, or the job
    that will do it in the background."""

    report: ImportReport | None = None
    job: LeadImportJob | None = None


# --- Reading the file ------------------------------------------------------------------


def _encoding_of(stream: BinaryIO) -> str:
    """utf-8 when the whole stream decodes as UTF-8, else cp1252 when it decodes as
    that; checked in blocks, so a large file is never held twice in memory."""
    for encoding in ("utf-8", "cp1252"):
        stream.seek(0)
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            while block := stream.read(1024 * 1024):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        return encoding
    raise _file_error("The file is not text in UTF-8 or Windows-1252: save it as CSV UTF-8.")


def _delimiter_of(header_line: str) -> str:
    counts = {delimiter: header_line.count(delimiter) for delimiter in (",", ";", "\t")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _normalise_header(header: str) -> str:
    return re.sub(r"[\s_\-]", "", header).lower()


class CsvSource:
    """An uploaded CSV file, checked and opened: its encoding, delimiter and the
    columns it has. ``rows()`` reads its data rows from the start each time."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        stream.seek(0)
        sample = stream.read(_SAMPLE_BYTES)
        if not sample.removeprefix(_BOM).strip():
            raise _file_error("The file is empty.")
        if sample.startswith(b"PK\x03\x04") or b"\x00" in sample:
            raise _file_error(
                "This is not a CSV text file: save the spreadsheet as CSV (comma or semicolon separated)."
            )
        self.offset = len(_BOM) if sample.startswith(_BOM) else 0
        self.encoding = _encoding_of(stream)
        first_line = sample[self.offset :].split(b"\n", 1)[0].decode(self.encoding, errors="replace")
        self.delimiter = _delimiter_of(first_line)

        reader = self._reader()
        try:
            header = next(reader)
        except (StopIteration, csv.Error) as exc:
            raise _file_error(f"The header row could not be read: {exc}") from None
        self.columns: dict[str, int] = {}
        duplicates = []
        for index, name in enumerate(header):
            key = COLUMNS.get(_normalise_header(name))
            if key is None:
                continue
            if key in self.columns:
                duplicates.append(key)
            else:
                self.columns[key] = index
        missing = [name for name in REQUIRED_COLUMNS if name not in self.columns]
        if missing:
            raise _file_error(
                f"The file has no {' and no '.join(missing)} column: the header row must name the columns "
                f"(name, phone, and optionally {', '.join(c for c in COLUMNS.values() if c not in REQUIRED_COLUMNS)})."
            )
        if duplicates:
            raise _file_error(f"The column {', '.join(sorted(set(duplicates)))} appears more than once.")

    @classmethod
    def from_bytes(cls, data: bytes) -> "CsvSource":
        return cls(io.BytesIO(data))

    def _reader(self) -> Iterator[list[str]]:
        self.stream.seek(self.offset)
        text = io.TextIOWrapper(self.stream, encoding=self.encoding, newline="")
        try:
            yield from csv.reader(text, delimiter=self.delimiter)
        finally:
            text.detach()  # leave the byte stream open for the next pass

    def rows(self, *, skip: int = 0) -> Iterator[tuple[int, list[str]]]:
        """(spreadsheet row number, cells) of every data row, blank rows left out,
        after the first ``skip`` data rows. A row the csv module can't read is a
        VALIDATION_ERROR naming it."""
        reader = self._reader()
        next(reader)  # the header, checked in __init__
        row_number, data_rows = 1, 0
        while True:
            row_number += 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise _file_error(f"Row {row_number} could not be read: {exc}.") from None
            if not any(cells) or not "".join(cells).strip():
                continue
            data_rows += 1
            if data_rows > skip:
                yield row_number, cells

    def count_rows(self) -> int:
        return sum(1 for _ in self.rows())


# --- Validating rows -------------------------------------------------------------------


def _clean(value: str) -> str:
    return value.strip() if _NEEDS_CLEANING.search(value) is None else clean_text(value)


def _valid_email(email: str) -> bool:
    if _PLAIN_EMAIL.fullmatch(email) is not None:
        return True
    try:
        validate_email(email)
    except ValidationError as exc:
        # The error holds itself (its error_list), so it lives until the collector frees
        # it, and with it its traceback: the parser's frame, and so the chunk's rows.
        exc.__traceback__ = None
        return False
    return True


def _new_ids(count: int) -> list[str]:
    """Random (version 4) UUIDs as 32 hex digits, the form both SQLite's char(32)
    and PostgreSQL's uuid columns take: one urandom call for the whole chunk."""
    digits = os.urandom(16 * count).hex()
    return [
        f"{digits[i : i + 12]}4{digits[i + 13 : i + 16]}{'89ab'[int(digits[i + 16], 16) & 3]}{digits[i + 17 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


# A staged lead: the values of these fields, None where the file gave none.
STAGED_FIELDS = ("name", "email", "source", "inquiry", "segment", "status", "assigned_to_id", "notes")
_TAGS = len(STAGED_FIELDS)  # index of the tag dict (lower-case name → name) in a staged lead


@dataclass
class ParsedChunk:
    """A chunk of rows, validated and merged by phone (E.164 → staged lead)."""

    leads: dict[str, list]
    rows: int = 0
    good_rows: int = 0
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    # Set by LeadWriter.prepare, in the parsing thread: the time its leads are written
    # with, its tags (lower-case name → name) and its tagged leads (phone, tags) and, on
    # PostgreSQL, its phones in order (also as a text[]), each lead's id should it be
    # new, and its COPY lines as new leads (in the phones' order).
    written_at: datetime | None = None
    tag_names: dict[str, str] = field(default_factory=dict)
    tagged: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    phone_array: str = "{}"
    new_ids: dict[str, str] = field(default_factory=dict)
    new_lines: list[str] = field(default_factory=list)


class RowParser:
    """Validates rows into staged leads. Runs without the database (the assignees are
    loaded up front), so it can run in a thread beside the writes."""

    def __init__(self, *, columns: dict[str, int], region: str, users: dict[str, Any]):
        self.columns = columns
        self.region = region
        self.users = users
        self.width = max(columns.values()) + 1
        self.phones: dict[str, tuple[str | None, str | None]] = {}
        self.name_max = Lead._meta.get_field("name").max_length
        self.email_max = Lead._meta.get_field("email").max_length
        self.source_max = Lead._meta.get_field("source").max_length
        self.tag_max = Tag._meta.get_field("name").max_length

    def phone(self, raw: str) -> tuple[str | None, str | None]:
        """(E.164, None) or (None, why not); each distinct text is parsed once."""
        found = self.phones.get(raw)
        if found is None:
            try:
                found = (to_e164(raw, self.region), None)
            except InvalidPhone as exc:
                found = (None, str(exc))
            if len(self.phones) >= _PHONE_CACHE_LIMIT:  # keep memory bounded on huge files
                self.phones.clear()
            self.phones[raw] = found
        return found

    def parse(self, rows: Iterable[tuple[int, list[str]]]) -> ParsedChunk:
        """Validates the rows (every row on its own, one pass) and merges the good ones
        by phone: later rows win, empty cells keep what earlier rows gave."""
        chunk = ParsedChunk(leads={})
        leads, errors = chunk.leads, chunk.errors
        add_error = errors.append
        c = self.columns
        i_name, i_phone = c["name"], c["phone"]
        i_email, i_source, i_inquiry = c.get("email"), c.get("source"), c.get("inquiry")
        i_segment, i_status, i_tags = c.get("segment"), c.get("status"), c.get("tags")
        i_assignee, i_notes = c.get("assignedTo"), c.get("notes")
        width, users, known_phones, phone_of = self.width, self.users, self.phones, self.phone
        name_max, email_max, source_max, tag_max = self.name_max, self.email_max, self.source_max, self.tag_max
        needs_cleaning, plain_email = _NEEDS_CLEANING.search, _PLAIN_EMAIL.fullmatch
        strip = str.strip
        count = good = 0
        for row_number, cells in rows:
            count += 1
            if len(cells) < width:
                cells = cells + [""] * (width - len(cells))
            # One look for markup over the whole row: a row without any (nearly all)
            # needs no cleaning beyond the strip, the same as _clean answers per cell.
            clean = strip if needs_cleaning("".join(cells)) is None else _clean
            failed = False

            name = clean(cells[i_name])
            if not name:
                add_error((row_number, "name", "Name is required."))
                failed = True
            elif len(name) > name_max:
                add_error((row_number, "name", f"Name is longer than {name_max} characters."))
                failed = True

            raw_phone = cells[i_phone].strip()
            if raw_phone:
                found = known_phones.get(raw_phone)
                phone, problem = found if found is not None else phone_of(raw_phone)
                if problem:
                    add_error((row_number, "phone", problem))
                    failed = True
            else:
                phone = None
                add_error((row_number, "phone", "Phone is required."))
                failed = True

            email = source = inquiry = segment = status = assignee = notes = None
            if i_email is not None and (value := cells[i_email].strip()):
                email = value.lower()
                if len(email) > email_max or (plain_email(email) is None and not _valid_email(email)):
                    add_error((row_number, "email", f"{value!r} is not a valid email address."))
                    failed = True
            if i_source is not None and (value := clean(cells[i_source])):
                source = value
                if len(value) > source_max:
                    add_error((row_number, "source", f"Source is longer than {source_max} characters."))
                    failed = True
            if i_inquiry is not None and (value := clean(cells[i_inquiry])):
                inquiry = value
                if len(value) > INQUIRY_MAX_LENGTH:
                    add_error((row_number, "inquiry", f"Inquiry is longer than {INQUIRY_MAX_LENGTH} characters."))
                    failed = True
            if i_notes is not None and (value := clean(cells[i_notes])):
                notes = value
                if len(value) > NOTES_MAX_LENGTH:
                    add_error((row_number, "notes", f"Notes are longer than {NOTES_MAX_LENGTH} characters."))
                    failed = True
            if i_segment is not None and (value := cells[i_segment].strip()):
                segment = value.lower()
                if segment not in SEGMENTS:
                    add_error((row_number, "segment", f"Unknown segment {value!r}: use hot, warm or cold."))
                    failed = True
            if i_status is not None and (value := cells[i_status].strip()):
                status = value.lower()
                if status not in STATUSES:
                    add_error((row_number, "status", f"Unknown status {value!r}: use {', '.join(Lead.Status.values)}."))
                    failed = True
            if i_assignee is not None and (value := cells[i_assignee].strip()):
                assignee = users.get(value.lower())
                if assignee is None:
                    add_error((row_number, "assignedTo", f"No active user with the email {value!r} in this account."))
                    failed = True
            tags = None
            if i_tags is not None and (value := cells[i_tags].strip()):
                tags = {}
                for part in value.split(";"):
                    tag = clean(part)
                    if not tag:
                        continue
                    if len(tag) > tag_max:
                        add_error((row_number, "tags", f"Tag {tag[:20]!r}… is longer than {tag_max} characters."))
                        failed = True
                        break
                    tags.setdefault(tag.lower(), tag)

            if failed:
                continue
            good += 1
            staged = leads.get(phone)
            if staged is None:
                leads[phone] = [name, email, source, inquiry, segment, status, assignee, notes, tags or {}]
            else:  # later rows win, empty cells keep what earlier rows gave
                for index, value in enumerate((name, email, source, inquiry, segment, status, assignee, notes)):
                    if value is not None:
                        staged[index] = value
                if tags:
                    for key, tag in tags.items():
                        staged[_TAGS].setdefault(key, tag)
        chunk.rows, chunk.good_rows = count, good
        return chunk


_DONE = object()

# While an import's parsing thread runs, the interpreter is set for the writes' sake:
# - The writing thread needs the GIL back after each of its statements and COPY blocks
#   (a few hundred per 100,000 rows); at Python's default switch interval (5 ms) it
#   waited up to that long each time while the server idled.
# - Automatic garbage collection is paused. Parsing allocates a few containers a row, so
#   the collector ran ~800 times per 100,000 rows, and its full passes over every live
#   object (six, up to 130 ms each) held the GIL while the writes waited: ~0.75 s of
#   CPU in all. The parsing thread collects the young generations itself for each
#   chunk instead (~5 ms), so cyclic garbage (a rejected email's ValidationError, which
#   holds itself in its error_list) is still freed and memory stays bounded by the chunk.
# Both settings are process-wide: concurrent imports share them, the last one out
# restores them. An import in a web request is small (LEAD_IMPORT_SYNC_MAX_ROWS) and
# ends within a second or so; a large one runs in a django-q2 worker process.
_PARSING_SWITCH_INTERVAL = 0.0005
_bulk_mode_lock = threading.Lock()
_bulk_mode_users = 0
_bulk_mode_saved: tuple[float, bool] = (0.0, True)


@contextlib.contextmanager
def _bulk_mode() -> Iterator[None]:
    """For the block, the interpreter's thread switch interval at most
    _PARSING_SWITCH_INTERVAL and automatic garbage collection paused (see above)."""
    global _bulk_mode_users, _bulk_mode_saved
    with _bulk_mode_lock:
        if _bulk_mode_users == 0:
            _bulk_mode_saved = (sys.getswitchinterval(), gc.isenabled())
            sys.setswitchinterval(min(_bulk_mode_saved[0], _PARSING_SWITCH_INTERVAL))
            gc.disable()
        _bulk_mode_users += 1
    try:
        yield
    finally:
        with _bulk_mode_lock:
            _bulk_mode_users -= 1
            if _bulk_mode_users == 0:
                switch_interval, collecting = _bulk_mode_saved
                sys.setswitchinterval(switch_interval)
                if collecting:
                    gc.enable()


def _parsed_chunks(
    source: CsvSource,
    parser: RowParser,
    *,
    skip: int,
    chunk_rows: int,
    prepare: Callable[[ParsedChunk], None],
) -> Iterator[ParsedChunk]:
    """Parsed and prepared chunks, produced by a thread one chunk ahead of the
    consumer: parsing and rendering (CPU) overlap the database's work on the previous
    chunk."""
    handoff: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item) -> None:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            rows = source.rows(skip=skip)
            # Small chunks first, so the writes start early and overlap the parsing sooner.
            size = min(chunk_rows, _FIRST_CHUNK_ROWS)
            while not stop.is_set():
                batch = list(islice(rows, size))
                size = min(chunk_rows, size * 2)
                if not batch:
                    break
                chunk = parser.parse(batch)
                del batch  # freed before the collection would walk it
                prepare(chunk)
                # The young generations (see _bulk_mode), while the writes of the chunk
                # before run: once this one is handed over they would wait for it.
                gc.collect(1)
                put(chunk)
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    with _bulk_mode():
        thread = threading.Thread(target=produce, name="lead-import-parser", daemon=True)
        thread.start()
        try:
            while True:
                item = handoff.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join()


# --- Writing ---------------------------------------------------------------------------


def _defaults(model: type[models.Model], skip: set[str]) -> dict[str, Any]:
    """Database values of the model's defaults for the columns an import doesn't set,
    so the raw INSERT keeps working when a field is added."""
    values = {}
    for model_field in model._meta.concrete_fields:
        if model_field.attname in skip:
            continue
        values[model_field.column] = model_field.get_db_prep_save(model_field.get_default(), connection)
    return values


class LeadWriter:
    """Writes parsed chunks of one import with a constant number of statements per
    chunk. Must run inside a transaction (the staging tables live in it).

    PostgreSQL: one SELECT finds which of the chunk's phones the account already has.
    The new leads go in with one COPY straight into the lead table, in a savepoint:
    should another writer add one of those phones meanwhile, the unique constraint
    stops the COPY and they join the rest. The rest (leads that exist) is staged by
    one COPY and merged by one ``INSERT … ON CONFLICT (account_id, phone) DO UPDATE``.
    SQLite: every lead through the staging table and the upsert. Then one statement
    for new tags, and for the tag links one COPY (the new leads') and one statement
    from a staged COPY (the others')."""

    STAGE = "heroshhi_lead_import_stage"
    STAGE_TAGS = "heroshhi_lead_import_stage_tags"

    def __init__(self, account: Account):
        self.account = account
        self.account_pk = Lead._meta.get_field("account").target_field.get_db_prep_value(account.pk, connection)
        self.postgres = connection.vendor == "postgresql"
        self.tag_ids: dict[str, Any] | None = None
        # PostgreSQL: the rows the lead table's statistics describe (read once needed),
        # and the leads this import created since they were taken.
        self.described_rows: float | None = None
        self.created_since_analyze = 0
        qn = connection.ops.quote_name
        self.qn = qn
        lead_table, tag_table = qn(Lead._meta.db_table), qn(Tag._meta.db_table)
        through = Lead.tags.through._meta
        self.lead_table, self.tag_table = lead_table, tag_table
        self.lead_table_name = Lead._meta.db_table
        self.link_table = through.db_table
        uuid_type = Lead._meta.pk.db_type(connection)
        user_pk_type = User._meta.pk.db_type(connection)
        tag_pk_type = Tag._meta.pk.rel_db_type(connection)
        self.stage_columns = ["id", "phone", *STAGED_FIELDS]
        column_types = {"id": uuid_type, "assigned_to_id": user_pk_type}
        self.create_stage = (
            f"CREATE TEMP TABLE {qn(self.STAGE)} ("
            + ", ".join(f"{qn(c)} {column_types.get(c, 'text')}" for c in self.stage_columns)
            + (") ON COMMIT DROP" if self.postgres else ")")
        )
        # The links are staged by lead id on PostgreSQL (the ids are known there), by
        # phone elsewhere.
        self.link_key = "lead_id" if self.postgres else "phone"
        self.create_stage_tags = (
            f"CREATE TEMP TABLE {qn(self.STAGE_TAGS)} "
            f"({qn(self.link_key)} {uuid_type if self.postgres else 'text'}, {qn('tag_id')} {tag_pk_type})"
            + (" ON COMMIT DROP" if self.postgres else "")
        )

        # INSERT … SELECT of the staged leads, with '' (or NULL) for the cells the file
        # left empty; on conflict those keep the lead's value. A lead's status is never
        # empty: on PostgreSQL an empty cell is staged as '' like the others, and the few
        # leads the upsert inserts rather than updates (after a lost race) are set to
        # pending by a statement of their own. SQLite looks the status up for empty
        # cells instead. Not on PostgreSQL: with statistics that predate the account the
        # planner took any (account_id, …) index for that lookup and read all of the
        # account's leads for each row, 35 s for 100,000 rows.
        if self.postgres:
            status = "COALESCE(s.status, '')"
            self.set_pending = (
                f"UPDATE {lead_table} SET status = %s "  # noqa: S608
                "WHERE account_id = %s AND id = ANY(%s::uuid[]) AND status = ''"
            )
        else:
            existing = f"(SELECT l.status FROM {lead_table} l WHERE l.account_id = %s AND l.phone = s.phone)"  # noqa: S608
            status = f"COALESCE(s.status, {existing}, %s)"
        merged = {
            "name": "s.name",
            "email": "COALESCE(s.email, '')",
            "source": "COALESCE(s.source, '')",
            "inquiry": "COALESCE(s.inquiry, '')",
            "notes": "COALESCE(s.notes, '')",
            "segment": "COALESCE(s.segment, '')",
            "status": status,
            "assigned_to_id": "s.assigned_to_id",
        }
        set_clauses = {
            "status": (
                f"COALESCE(NULLIF(EXCLUDED.status, ''), {lead_table}.status)" if self.postgres else "EXCLUDED.status"
            ),
            "assigned_to_id": f"COALESCE(EXCLUDED.assigned_to_id, {lead_table}.assigned_to_id)",
        }
        for name in ("name", "email", "source", "inquiry", "notes", "segment"):
            set_clauses[name] = f"COALESCE(NULLIF(EXCLUDED.{qn(name)}, ''), {lead_table}.{qn(name)})"
        # A row that changes nothing is left alone (no new row version, no index
        # entries, updated_at kept): re-importing the same sheet costs reads only.
        distinct = "IS DISTINCT FROM" if self.postgres else "IS NOT"
        changed = " OR ".join(f"{lead_table}.{qn(c)} {distinct} {expression}" for c, expression in set_clauses.items())
        set_clauses["updated_at"] = "EXCLUDED.updated_at"

        self.defaults = _defaults(Lead, skip={"id", "account_id", "phone", "created_at", "updated_at", *merged})
        columns, expressions = ["id", "account_id", "phone"], ["s.id", "%s", "s.phone"]
        for column_name, expression in merged.items():
            columns.append(column_name)
            expressions.append(expression)
        columns += ["created_at", "updated_at", *self.defaults]
        expressions += ["%s", "%s", *(["%s"] * len(self.defaults))]
        self.upsert = (
            f"INSERT INTO {lead_table} ({', '.join(qn(c) for c in columns)}) "  # noqa: S608
            f"SELECT {', '.join(expressions)} FROM {qn(self.STAGE)} s "
            "WHERE true "  # SQLite: tells the upsert's ON from a join's
            "ORDER BY s.phone "  # index locality
            f"ON CONFLICT (account_id, phone) DO UPDATE SET "
            + ", ".join(f"{qn(c)} = {expression}" for c, expression in set_clauses.items())
            + f" WHERE {changed}"
        )
        if self.postgres:
            # The leads inserted or changed, with their ids (for the tag links).
            self.upsert += f" RETURNING {lead_table}.id, {lead_table}.phone, ({lead_table}.xmax = 0)"
        self.count_existing = (
            f"SELECT COUNT(*) FROM {qn(self.STAGE)} s "  # noqa: S608
            f"JOIN {lead_table} l ON l.account_id = %s AND l.phone = s.phone"
        )
        # PostgreSQL: the ids of the chunk's phones that are leads already. One
        # "phone = ANY(list)": whatever index the planner takes, at worst it reads each
        # of the account's leads once, testing it against the list by hash (PostgreSQL
        # 14+). Not a lookup per phone: with statistics older than the account's leads
        # (a new account's first import) the planner estimated one lead for the account
        # and read all of them for every phone, 105 s for a chunk of 10,000 phones
        # against 86,000 leads.
        self.find_existing = (
            f"SELECT l.phone, l.id FROM {lead_table} l WHERE l.account_id = %s AND l.phone = ANY(%s::text[])"  # noqa: S608
        )
        self.new_lead_columns = ["id", "account_id", "phone", *STAGED_FIELDS, "created_at", "updated_at"]
        self.new_lead_columns += self.defaults

        tag_defaults = _defaults(Tag, skip={"id", "account_id", "name", "color", "created_at"})
        tag_columns = ["account_id", "name", "color", "created_at", *tag_defaults]
        self.tag_default_values = list(tag_defaults.values())
        self.insert_tags = (
            f"INSERT INTO {tag_table} ({', '.join(qn(c) for c in tag_columns)}) "  # noqa: S608
            f"VALUES ({', '.join(['%s'] * len(tag_columns))}) ON CONFLICT (account_id, name) DO NOTHING"
        )
        if self.postgres:
            self.link_tags = (
                f"INSERT INTO {qn(through.db_table)} ({qn('lead_id')}, {qn('tag_id')}) "  # noqa: S608
                f"SELECT st.lead_id, st.tag_id FROM {qn(self.STAGE_TAGS)} st ON CONFLICT DO NOTHING"
            )
        else:
            self.link_tags = (
                f"INSERT INTO {qn(through.db_table)} ({qn('lead_id')}, {qn('tag_id')}) "  # noqa: S608
                f"SELECT (SELECT l.id FROM {lead_table} l WHERE l.account_id = %s AND l.phone = st.phone), st.tag_id "
                f"FROM {qn(self.STAGE_TAGS)} st WHERE true ON CONFLICT DO NOTHING"
            )

    def _fill(self, cursor, table: str, columns: list[str], rows: list[tuple]) -> None:
        """One COPY (PostgreSQL) or one executemany (SQLite) of prepared rows into a
        table (a staging one, or the link table)."""
        if not rows:
            return
        if self.postgres:
            self._copy(cursor, table, columns, map(copy_lines, _blocks(rows)))
        else:
            cursor.executemany(
                f"INSERT INTO {self.qn(table)} VALUES ({', '.join(['%s'] * len(columns))})",  # noqa: S608
                rows,
            )

    def _copy(self, cursor, table: str, columns: list[str], blocks: Iterable[str]) -> None:
        """One COPY of text lines, sent block by block: the server inserts the first
        rows while Python renders the next."""
        with cursor.copy(f"COPY {self.qn(table)} ({', '.join(map(self.qn, columns))}) FROM STDIN") as copy:
            for block in blocks:
                copy.write(block)

    def _copy_lines(self, cursor, table: str, columns: list[str], lines: list[str]) -> None:
        """One COPY of lines already rendered, sent _COPY_BLOCK_ROWS at a time."""
        self._copy(cursor, table, columns, map("".join, _blocks(lines)))

    def prepare(self, chunk: ParsedChunk) -> None:
        """The chunk's work that needs no database, done by the parsing thread ahead of
        the writes (see ParsedChunk). On PostgreSQL each lead's COPY line as a new lead
        is rendered here from a line made once, with the values every lead shares."""
        chunk.written_at = timezone.now()
        tag_names, tagged = chunk.tag_names, chunk.tagged
        for phone, staged in chunk.leads.items():
            if tags := staged[_TAGS]:
                tagged.append((phone, tags))
                for key, tag in tags.items():
                    tag_names.setdefault(key, tag)
        if not self.postgres:
            return
        chunk.phones = sorted(chunk.leads)  # index locality
        chunk.phone_array = _phone_array(chunk.phones)
        chunk.new_ids = dict(zip(chunk.phones, _new_ids(len(chunk.phones)), strict=True))
        # new_lead_columns: id, account, then phone … notes (STAGED_FIELDS' order), then the rest.
        fill = copy_line_format(
            [
                VARYING,
                self.account_pk,
                *[VARYING] * (1 + len(STAGED_FIELDS)),
                chunk.written_at,
                chunk.written_at,
                *self.defaults.values(),
            ]
        ).format
        escape, pending, leads = copy_escape, str(Lead.Status.PENDING.value), chunk.leads
        add_line = chunk.new_lines.append
        for phone, lead_id in chunk.new_ids.items():
            name, email, source, inquiry, segment, status, assignee, notes, _tags = leads[phone]
            add_line(
                fill(
                    lead_id,
                    phone,
                    escape(name),
                    escape(email) if email else "",
                    escape(source) if source else "",
                    escape(inquiry) if inquiry else "",
                    segment or "",
                    status or pending,
                    assignee or "\\N",
                    escape(notes) if notes else "",
                )
            )

    def _tag_map(self, cursor) -> dict[str, Any]:
        sql = f"SELECT id, name FROM {self.tag_table} WHERE account_id = %s ORDER BY id"  # noqa: S608
        cursor.execute(sql, [self.account_pk])
        found: dict[str, Any] = {}
        for tag_id, name in cursor.fetchall():
            found.setdefault(name.lower(), tag_id)
        return found

    def write(self, chunk: ParsedChunk) -> int:
        """Upserts the chunk's leads (a chunk ``prepare`` has seen) and links their tags;
        answers how many leads it created."""
        if not chunk.leads:
            return 0
        now_db = Lead._meta.get_field("updated_at").get_db_prep_save(chunk.written_at, connection)
        with connection.cursor() as cursor:
            if self.postgres:
                self._refresh_statistics(cursor)
                created, existing_ids = self._write_leads_postgres(cursor, chunk, now_db)
                self.created_since_analyze += created
            else:
                created, _ = self._upsert_staged(cursor, chunk.leads, now_db)
                existing_ids = None
            self._write_tags(cursor, chunk, existing_ids, now_db)
        return created

    def _refresh_statistics(self, cursor) -> None:
        """ANALYZEs the lead table once this import has grown it to STATISTICS_GROWTH
        times the rows its statistics describe (and by at least ANALYZE_MIN_CREATED),
        as autovacuum would, later. PostgreSQL plans the tag links' foreign-key check
        once per session and keeps the plan until the table's statistics change. Planned
        while the table looked nearly empty beside a bloated primary key (its leads were
        deleted), that check is a sequential scan, and each link read the whole growing
        table: a 100,000-row import took 220 s instead of 6. The ANALYZE makes it plan
        again; growth by a factor keeps it to a few per import, none in a large table."""
        if self.created_since_analyze < ANALYZE_MIN_CREATED:
            return
        if self.described_rows is None:
            cursor.execute("SELECT GREATEST(reltuples, 0) FROM pg_class WHERE oid = %s::regclass", [self.lead_table])
            self.described_rows = cursor.fetchone()[0]
        if self.created_since_analyze >= (STATISTICS_GROWTH - 1) * self.described_rows:
            # What these plans depend on is the table's size: one column on a sample of
            # 300 rows gives it in ~5 ms (the whole table's statistics take ~100 times that).
            cursor.execute("SET LOCAL default_statistics_target = 1")
            # SKIP_LOCKED: never wait. What holds the lock (a VACUUM or ANALYZE of the table,
            # another import's refresh) refreshes the statistics itself, and an import
            # holding row locks must not queue behind another one that waits for them.
            cursor.execute(f"ANALYZE (SKIP_LOCKED) {self.lead_table} (id)")
            self.described_rows += self.created_since_analyze
            self.created_since_analyze = 0

    def _write_leads_postgres(self, cursor, chunk: ParsedChunk, now_db) -> tuple[int, dict[str, Any]]:
        """(leads created, phone → id of the leads that were not created by the COPY) for
        a chunk's leads, on PostgreSQL. The COPY's leads have the ids ``prepare`` gave."""
        leads, account_pk, phones = chunk.leads, self.account_pk, chunk.phones
        cursor.execute(self.find_existing, [account_pk, chunk.phone_array])
        existing_ids: dict[str, Any] = dict(cursor.fetchall())
        created = 0
        if len(existing_ids) < len(phones):
            lines = chunk.new_lines
            if existing_ids:
                lines = [line for phone, line in zip(phones, lines, strict=True) if phone not in existing_ids]
            try:
                with transaction.atomic(savepoint=True):
                    self._copy_lines(cursor, self.lead_table_name, self.new_lead_columns, lines)
            except Exception as exc:
                if not _is_unique_violation(exc):
                    raise
                # Another writer added one of these phones since the SELECT: they all
                # go through the upsert, which updates that one.
                existing_ids = dict.fromkeys(phones)
            else:
                created = len(lines)
        if existing_ids:
            inserted, returned = self._upsert_staged(cursor, {phone: leads[phone] for phone in existing_ids}, now_db)
            created += inserted
            # The ids of leads inserted or changed (a lead deleted since the SELECT was
            # inserted again, with a new id).
            existing_ids.update((phone, lead_id) for lead_id, phone, _ in returned)
            missing = [phone for phone, lead_id in existing_ids.items() if lead_id is None]
            if missing:  # only after a lost race: leads added by another writer, left unchanged
                cursor.execute(self.find_existing, [account_pk, _phone_array(missing)])
                existing_ids.update(cursor.fetchall())
        return created, existing_ids

    def _upsert_staged(self, cursor, leads: dict[str, list], now_db) -> tuple[int, list[tuple]]:
        """Stages the leads (one COPY or executemany) and upserts them (one statement);
        answers how many it created and, on PostgreSQL, (id, phone, inserted) of the
        leads it inserted or changed."""
        account_pk = self.account_pk
        # Ids for every staged lead; those that turn out to exist keep their own.
        lead_rows = [
            (lead_id, phone, *staged[:_TAGS])
            for lead_id, (phone, staged) in zip(_new_ids(len(leads)), leads.items(), strict=True)
        ]
        cursor.execute(self.create_stage)
        self._fill(cursor, self.STAGE, self.stage_columns, lead_rows)
        del lead_rows
        status_params = [] if self.postgres else [account_pk, Lead.Status.PENDING]
        params = [account_pk, *status_params, now_db, now_db, *self.defaults.values()]
        returned: list[tuple] = []
        if self.postgres:
            cursor.execute(self.upsert, params)
            returned = cursor.fetchall()
            inserted = [lead_id for lead_id, _, is_new in returned if is_new]
            if inserted:  # new leads whose status cell was empty: pending
                cursor.execute(self.set_pending, [Lead.Status.PENDING, account_pk, inserted])
            created = len(inserted)
        else:
            cursor.execute(self.count_existing, [account_pk])
            created = len(leads) - cursor.fetchone()[0]
            cursor.execute(self.upsert, params)
        cursor.execute(f"DROP TABLE {self.qn(self.STAGE)}")
        return created, returned

    def _write_tags(self, cursor, chunk: ParsedChunk, existing_ids: dict[str, Any] | None, now_db) -> None:
        """Creates the chunk's new tags (one statement) and links the leads to their
        tags: on PostgreSQL the leads this chunk's COPY created (those not in
        ``existing_ids``) by one COPY straight into the link table (nothing can be
        linked to them yet), the others by one COPY into a staging table and one
        INSERT … SELECT … ON CONFLICT DO NOTHING; on SQLite every link that way, by
        phone (``existing_ids`` None)."""
        if not chunk.tag_names:
            return
        account_pk = self.account_pk
        if self.tag_ids is None:
            self.tag_ids = self._tag_map(cursor)
        missing = [tag for key, tag in chunk.tag_names.items() if key not in self.tag_ids]
        if missing:
            cursor.executemany(
                self.insert_tags,
                [(account_pk, tag, DEFAULT_TAG_COLOR, now_db, *self.tag_default_values) for tag in missing],
            )
            self.tag_ids = self._tag_map(cursor)
        tag_ids = self.tag_ids
        if not self.postgres:
            links = [(phone, tag_ids[key]) for phone, tags in chunk.tagged for key in tags]
            cursor.execute(self.create_stage_tags)
            self._fill(cursor, self.STAGE_TAGS, [self.link_key, "tag_id"], links)
        else:
            # COPY lines written here: a lead id (a str, or psycopg's UUID) and a tag id
            # (an integer) need no escaping.
            new_links, links = [], []
            new_ids = chunk.new_ids
            for phone, tags in chunk.tagged:
                if phone not in existing_ids:  # created by the COPY
                    lead_id = new_ids[phone]
                    new_links += [f"{lead_id}\t{tag_ids[key]}\n" for key in tags]
                elif (lead_id := existing_ids[phone]) is not None:  # None: deleted meanwhile
                    links += [f"{lead_id}\t{tag_ids[key]}\n" for key in tags]
            if new_links:
                self._copy_lines(cursor, self.link_table, ["lead_id", "tag_id"], new_links)
            if not links:
                return
            cursor.execute(self.create_stage_tags)
            self._copy_lines(cursor, self.STAGE_TAGS, [self.link_key, "tag_id"], links)
        cursor.execute(self.link_tags, [] if self.postgres else [account_pk])
        cursor.execute(f"DROP TABLE {self.qn(self.STAGE_TAGS)}")


def _blocks(items: list) -> Iterator[list]:
    """The items _COPY_BLOCK_ROWS at a time: a COPY is sent block by block."""
    for start in range(0, len(items), _COPY_BLOCK_ROWS):
        yield items[start : start + _COPY_BLOCK_ROWS]


def _phone_array(phones: Iterable[str]) -> str:
    """PostgreSQL's text of a text[] of E.164 phones: only "+" and digits, so no element
    needs quoting. One string, not a list psycopg adapts element by element."""
    return "{" + ",".join(phones) + "}"


def _is_unique_violation(exc: BaseException) -> bool:
    """Whether a database error (psycopg's, or Django's wrapping it) is a unique violation."""
    try:
        from psycopg import errors
    except ImportError:  # pragma: no cover - PostgreSQL runs with psycopg
        return False
    return isinstance(exc, errors.UniqueViolation) or isinstance(exc.__cause__, errors.UniqueViolation)


# --- Running an import -----------------------------------------------------------------


def _assignees(account: Account) -> dict[str, str]:
    """Lower-case email → id (32 hex digits, as staged) of the account's active users."""
    users = User.objects.filter(account=account, is_active=True).values_list("pk", "email")
    return {email.lower(): pk.hex for pk, email in users}


def _run(
    *,
    account: Account,
    source: CsvSource,
    report: ImportReport,
    skip: int = 0,
    chunk_rows: int | None = None,
    atomic_chunks: bool,
    on_chunk: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Imports the source's rows (after ``skip``) chunk by chunk into ``report``.

    ``atomic_chunks``: each chunk commits on its own, with ``on_chunk`` (progress)
    in the same transaction; otherwise the caller's transaction holds everything."""
    parser = RowParser(columns=source.columns, region=account.default_country, users=_assignees(account))
    writer = LeadWriter(account)
    chunks = _parsed_chunks(source, parser, skip=skip, chunk_rows=chunk_rows or CHUNK_ROWS, prepare=writer.prepare)
    with contextlib.closing(chunks):
        for chunk in chunks:
            with transaction.atomic() if atomic_chunks else contextlib.nullcontext():
                if atomic_chunks:
                    writer.tag_ids = None  # another transaction may have changed the tags
                created = writer.write(chunk)
                report.created += created
                report.updated += chunk.good_rows - created
                report.skipped += chunk.rows - chunk.good_rows
                report.processed_rows += chunk.rows
                for row_number, field_name, message in chunk.errors:
                    report.add_error(row_number, field_name, message)
                if on_chunk is not None:
                    on_chunk(report)
    return report


def _require_admin(*, account: Account, user: User) -> None:
    if user.account_id != account.pk or not user.is_account_admin:
        raise PermissionDenied("Only account admins can import leads.")


def lead_import_csv(*, account: Account, user: User, data: bytes) -> ImportReport:
    """Imports a CSV file now, whatever its size, in one transaction: if anything
    fails, nothing of it is written."""
    _require_admin(account=account, user=user)
    source = _open(data)
    with transaction.atomic():
        return _run(account=account, source=source, report=ImportReport(), atomic_chunks=False)


def lead_import_stream(
    *,
    account: Account,
    stream: BinaryIO,
    skip: int = 0,
    report: ImportReport | None = None,
    on_chunk: Callable[[ImportReport], None] | None = None,
    chunk_rows: int | None = None,
) -> ImportReport:
    """The background path: a seekable byte stream of any size, read and written
    chunk by chunk, each chunk committed with its progress (``on_chunk``). Memory
    stays bounded by the chunk size."""
    return _run(
        account=account,
        source=CsvSource(stream),
        report=report or ImportReport(),
        skip=skip,
        chunk_rows=chunk_rows,
        atomic_chunks=True,
        on_chunk=on_chunk,
    )


def _open(data: bytes) -> CsvSource:
    if not data:
        raise _file_error("The file is empty.")
    if len(data) > settings.MAX_UPLOAD_SIZE:
        raise FileTooLarge(f"The file is too large (limit {settings.MAX_UPLOAD_SIZE // (1024 * 1024)} MiB).")
    return CsvSource.from_bytes(data)


def lead_import_submit(*, account: Account, user: User, data: bytes, file_name: str = "") -> ImportOutcome:
    """An upload: imported now when it has at most LEAD_IMPORT_SYNC_MAX_ROWS data
    rows, else stored as a job for a worker (queued once the job is committed)."""
    _require_admin(account=account, user=user)
    source = _open(data)
    total = source.count_rows()
    if total == 0:
        raise _file_error("The file has a header row but no data rows.")
    if total <= settings.LEAD_IMPORT_SYNC_MAX_ROWS:
        with transaction.atomic():
            report = _run(account=account, source=source, report=ImportReport(), atomic_chunks=False)
        return ImportOutcome(report=report)
    with transaction.atomic():
        job = LeadImportJob.objects.create(
            account=account, user=user, data=data, total_rows=total, file_name=(file_name or "")[:255]
        )
        job_id = str(job.pk)
        transaction.on_commit(lambda: _enqueue(job_id))
    return ImportOutcome(job=job)


def _enqueue(job_id: str) -> None:
    from django_q.tasks import async_task

    async_task("leads.tasks.lead_import_job_task", job_id, task_name=f"lead-import-{job_id}", group="lead-import")


def lead_import_job_run(*, job_id) -> bool:
    """Runs a queued job; answers whether this call ran it.

    The job is claimed with a conditional update, so a second delivery of the task
    does nothing while the first one runs. A running job whose heartbeat is older
    than the broker's retry period lost its worker: the redelivered task takes it
    over and goes on after the rows already committed."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.Q_CLUSTER.get("retry", 180))
    claimed = (
        LeadImportJob.objects.filter(pk=job_id)
        .filter(Q(status=LeadImportJob.Status.QUEUED) | Q(status=LeadImportJob.Status.RUNNING, heartbeat_at__lt=stale))
        .update(status=LeadImportJob.Status.RUNNING, started_at=Coalesce("started_at", now), heartbeat_at=now)
    )
    if not claimed:
        return False
    job = LeadImportJob.objects.select_related("account").get(pk=job_id)
    report = ImportReport(
        created=job.created_count,
        updated=job.updated_count,
        skipped=job.skipped_count,
        errors=list(job.errors),
        error_count=job.error_count,
        processed_rows=job.processed_rows,
    )

    def save_progress(progress: ImportReport) -> None:
        LeadImportJob.objects.filter(pk=job.pk).update(**_job_counts(progress), heartbeat_at=timezone.now())

    try:
        lead_import_stream(
            account=job.account,
            stream=io.BytesIO(bytes(job.data)),
            skip=job.processed_rows,
            report=report,
            on_chunk=save_progress,
        )
    except Exception as exc:
        if isinstance(exc, DomainError):
            message = exc.message
        else:
            logger.exception("Lead import job %s failed", job.pk)
            message = "The import stopped on an unexpected error."
        LeadImportJob.objects.filter(pk=job.pk).update(
            status=LeadImportJob.Status.FAILED,
            error_message=f"{message} {report.processed_rows} of {job.total_rows} rows were imported before it stopped.",  # noqa: E501
            finished_at=timezone.now(),
        )
        return True
    LeadImportJob.objects.filter(pk=job.pk).update(
        **_job_counts(report),
        status=LeadImportJob.Status.COMPLETED,
        finished_at=timezone.now(),
        data=b"",  # the report stays; the file is not needed any more
    )
    return True


def _job_counts(report: ImportReport) -> dict[str, Any]:
    return {
        "processed_rows": report.processed_rows,
        "created_count": report.created,
        "updated_count": report.updated,
        "skipped_count": report.skipped,
        "error_count": report.error_count,
        "errors": report.errors,
    }


def lead_import_job_get(*, user: User, job_id) -> LeadImportJob:
    """An import job of the user's account (without its file), or NotFound."""
    job = LeadImportJob.objects.defer("data").filter(pk=job_id, account_id=user.account_id).first()
    if job is None:
        raise NotFound("Import job not found.")
    return job


def lead_import_job_progress(job: LeadImportJob) -> int:
    if job.status == LeadImportJob.Status.COMPLETED:
        return 100
    if not job.total_rows:
        return 0
    return min(100, job.processed_rows * 100 // job.total_rows)


# --- Export ----------------------------------------------------------------------------

EXPORT_COLUMNS = [
    "name",
    "phone",
    "email",
    "source",
    "inquiry",
    "segment",
    "status",
    "tags",
    "assignedTo",
    "notes",
    "isOptedOut",
    "createdAt",
]


def csv_safe(value: Any) -> str:
    """A cell that a spreadsheet will not run as a formula: text starting with
    = + - @ (or a tab or CR) gets a leading apostrophe (OWASP's CSV-injection advice).
    Stored text is kept as typed; this applies to every CSV the app writes."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


class _Echo:
    def write(self, value: str) -> str:
        return value


def _export_timestamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def lead_export_csv(*, user: User) -> Iterator[str]:
    """The leads the user may see as CSV lines (BOM first, for Excel), in columns the
    import reads back; phones as digits with the country code. Streams: leads are
    read 2,000 at a time."""
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(EXPORT_COLUMNS)
    leads = (
        lead_scope(user=user)
        .select_related("assigned_to")
        .prefetch_related("tags")
        .order_by("created_at", "id")
        .iterator(chunk_size=2000)
    )
    for lead in leads:
        yield writer.writerow(
            [
                csv_safe(value)
                for value in (
                    lead.name,
                    display_phone(lead.phone),
                    lead.email,
                    lead.source,
                    lead.inquiry,
                    lead.segment,
                    lead.status,
                    ";".join(sorted(tag.name for tag in lead.tags.all())),
                    lead.assigned_to.email if lead.assigned_to else "",
                    lead.notes,
                    "true" if lead.is_opted_out else "false",
                    _export_timestamp(lead.created_at),
                )
            ]
        )
