"""Throughput of the CSV lead import, through the real service, on the configured database.

    .venv/bin/python bench/import_leads.py                          # SQLite, 100,000 rows
    DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/heroshhi_bench_import \
        .venv/bin/python bench/import_leads.py                      # PostgreSQL (+ the COPY floor)
    .venv/bin/python bench/import_leads.py --rows 1000000           # memory stays bounded

Needs a migrated database (`manage.py migrate` with the same DATABASE_URL). Generates a
CSV file in a temp directory (~5% bad rows, ~10% of rows repeating an earlier phone,
phones written the ways people write them, a third of the rows with tags), imports it
into a fresh account through ``leads.imports.lead_import_stream`` (the background
path: chunk by chunk, each chunk committed), and prints rows per second, peak memory
(max RSS) and the number of SQL statements. On PostgreSQL it also times a plain
``COPY … (FORMAT csv)`` of the same valid rows into a bare temp table: the floor; and
a COPY of the leads the import wrote into an empty table with the lead table's indexes:
the floor for writing those rows at all.
The bench account and its leads are deleted afterwards.
"""

import argparse
import csv
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heroshhi.settings")

import django

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from accounts.models import Account, User  # noqa: E402
from leads import imports  # noqa: E402
from leads.models import Lead, Tag  # noqa: E402

HEADER = ["name", "phone", "email", "source", "inquiry", "segment", "status", "tags"]
FIRST = ["Asha", "Ravi", "Priya", "Arjun", "Meera", "Vikram", "Sara", "Kabir", "Nisha", "Rohan", "Anita", "Dev"]
LAST = ["Rao", "Sharma", "Iyer", "Patel", "Khan", "Singh", "Das", "Menon", "Gupta", "Nair", "Bose", "Joshi"]
SOURCES = ["Website Form", "Expo 2026", "Facebook Ad", "Referral", "Walk-in", "Google Ads"]
INQUIRIES = ["Wants a demo", "Pricing for 10 seats", "Call after 6 pm", "Interested in the annual plan", ""]
TAGS = [f"tag-{n}" for n in range(20)]


def phone_text(digits: str, rng: random.Random) -> str:
    """The ways people write an Indian mobile number in a spreadsheet."""
    form = rng.random()
    if form < 0.4:
        return digits
    if form < 0.7:
        return f"+91 {digits[:5]} {digits[5:]}"
    if form < 0.9:
        return f"+91{digits}"
    return f"0{digits[:5]}-{digits[5:]}"


def generate(path: Path, valid_path: Path, rows: int, bad: float, duplicates: float, seed: int) -> int:
    """Writes the bench file (and the rows meant to be valid, for the COPY floor);
    answers how many rows are bad on purpose."""
    rng = random.Random(seed)
    seen: list[str] = []
    bad_rows = 0
    with path.open("w", newline="", encoding="utf-8") as out, valid_path.open("w", newline="", encoding="utf-8") as ok:
        writer, valid = csv.writer(out), csv.writer(ok)
        writer.writerow(HEADER)
        valid.writerow(HEADER)
        for i in range(rows):
            if seen and rng.random() < duplicates:
                digits = rng.choice(seen)
            else:
                digits = f"{rng.choice('6789')}{rng.randrange(10**9):09d}"
                if len(seen) < 200_000:
                    seen.append(digits)
                else:
                    seen[rng.randrange(len(seen))] = digits
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            row = [
                name,
                phone_text(digits, rng),
                f"{name.split()[0].lower()}.{i}@example.com" if rng.random() < 0.7 else "",
                rng.choice(SOURCES),
                rng.choice(INQUIRIES),
                rng.choice(["hot", "warm", "cold", ""]),
                rng.choice(["pending", "contacted", ""]),
                ";".join(rng.sample(TAGS, rng.randint(1, 2))) if rng.random() < 0.33 else "",
            ]
            if rng.random() < bad:
                bad_rows += 1
                kind = rng.randrange(4)
                if kind == 0:
                    row[1] = f"12{rng.randrange(1000)}"  # not a phone number
                elif kind == 1:
                    row[0] = ""  # no name
                elif kind == 2:
                    row[5] = "scorching"  # unknown segment
                else:
                    row[2] = "not-an-email"
            else:
                valid.writerow(row)
            writer.writerow(row)
    return bad_rows


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def python_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_cpu() -> float | None:
    """CPU seconds used so far by this connection's PostgreSQL backend, when the
    server runs on this machine (its /proc entry is readable); else None."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def copy_floor(valid_path: Path) -> float:
    """Seconds for PostgreSQL to COPY the valid rows into a bare temp table."""
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE bench_copy_floor (name text, phone text, email text, source text, "
            "inquiry text, segment text, status text, tags text) ON COMMIT DROP"
        )
        copy_sql = "COPY bench_copy_floor FROM STDIN (FORMAT csv, HEADER true)"
        with cursor.copy(copy_sql) as copy, valid_path.open("rb") as source:
            while block := source.read(1024 * 1024):
                copy.write(block)
    return time.perf_counter() - started


def indexed_copy_floor(account: Account) -> tuple[int, float]:
    """(rows, seconds) for PostgreSQL to COPY the leads the import wrote into an empty
    table made like the lead table, with all of its indexes (the trigram ones too) but
    not its foreign keys: what writing those rows costs with nothing to look up, merge
    or link. Rolled back afterwards."""
    table = connection.ops.quote_name(Lead._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        blocks = []
        leads = f"SELECT * FROM {table} WHERE account_id = '{account.pk}'"  # noqa: S608 - a UUID
        with cursor.copy(f"COPY ({leads}) TO STDOUT") as copy:
            blocks.extend(bytes(block) for block in copy)
        cursor.execute(f"CREATE TABLE bench_indexed_floor (LIKE {table} INCLUDING DEFAULTS INCLUDING INDEXES)")
        started = time.perf_counter()
        with cursor.copy("COPY bench_indexed_floor FROM STDIN") as copy:
            for block in blocks:
                copy.write(block)
        elapsed = time.perf_counter() - started
        cursor.execute("SELECT COUNT(*) FROM bench_indexed_floor")
        rows = cursor.fetchone()[0]
        transaction.set_rollback(True)
    return rows, elapsed


def delete_account(account: Account) -> None:
    qn = connection.ops.quote_name
    through = qn(Lead.tags.through._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {through} WHERE tag_id IN (SELECT id FROM {qn(Tag._meta.db_table)} WHERE account_id = %s)",  # noqa: S608
            [account.pk.hex if connection.vendor == "sqlite" else account.pk],
        )
        Lead.objects.filter(account=account)._raw_delete(connection.alias)
        Tag.objects.filter(account=account)._raw_delete(connection.alias)
        User.objects.filter(account=account).delete()
        account.delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--bad", type=float, default=0.05, help="share of bad rows")
    parser.add_argument("--duplicates", type=float, default=0.10, help="share of rows repeating an earlier phone")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--keep", action="store_true", help="keep the bench account and its leads")
    args = parser.parse_args()

    engine = connection.vendor
    with tempfile.TemporaryDirectory(prefix="heroshhi-bench-") as tmp:
        path, valid_path = Path(tmp) / "leads.csv", Path(tmp) / "valid.csv"
        started = time.perf_counter()
        bad_rows = generate(path, valid_path, args.rows, args.bad, args.duplicates, args.seed)
        size_mib = path.stat().st_size / (1024 * 1024)
        print(
            f"database {engine}; {args.rows:,} rows ({size_mib:.1f} MiB, {bad_rows:,} bad on purpose) "
            f"generated in {time.perf_counter() - started:.1f} s"
        )

        account = Account.objects.create(name=f"Import bench {time.strftime('%H:%M:%S')}")
        User.objects.create_user(f"bench-{account.pk.hex[:12]}@bench.heroshhi.local", account=account, role="admin")
        # The bulk statements, which CaptureQueriesContext does not see: the COPYs on
        # PostgreSQL, the executemanys on SQLite.
        copies = []
        bulk_name = "_copy" if engine == "postgresql" else "_fill"
        real_bulk = getattr(imports.LeadWriter, bulk_name)

        def counted_bulk(self, cursor, table, columns, rows):
            copies.append(table)
            return real_bulk(self, cursor, table, columns, rows)

        setattr(imports.LeadWriter, bulk_name, counted_bulk)
        rss_before = max_rss_mib()
        server_before, python_before = server_cpu(), python_cpu()
        load_before = f"{os.getloadavg()[0]:.2f}"
        try:
            with path.open("rb") as stream, CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                chunk_ends: list[int] = []
                report = imports.lead_import_stream(
                    account=account, stream=stream, on_chunk=lambda progress: chunk_ends.append(progress.processed_rows)
                )
                elapsed = time.perf_counter() - started
            python_used = python_cpu() - python_before
            server_after = server_cpu()
            chunks = len(chunk_ends)
            leads = Lead.objects.filter(account=account).count()
            print(
                f"import: {elapsed:.2f} s = {args.rows / elapsed:,.0f} rows/s   "
                f"created {report.created:,}, updated {report.updated:,}, skipped {report.skipped:,} "
                f"({report.error_count:,} errors); {leads:,} leads in the account"
            )
            fill = "COPY" if engine == "postgresql" else "executemany"
            print(
                f"statements: {len(queries)} SQL + {len(copies)} {fill} for {chunks} chunks of up to "
                f"{imports.CHUNK_ROWS:,} rows ({len(queries) / chunks:.1f} + {len(copies) / chunks:.1f} per chunk)"
            )
            print(f"peak memory (max RSS): {max_rss_mib():.0f} MiB (before the import: {rss_before:.0f} MiB)")
            # Parsing (Python) and writing (the database) overlap, one chunk apart: on an
            # otherwise idle machine the import takes about the larger of the two.
            cpu = f"CPU: Python {python_used:.2f} s"
            if server_before is not None and server_after is not None:
                server_used = server_after - server_before
                bound = max(python_used, server_used)
                cpu += (
                    f", PostgreSQL backend {server_used:.2f} s; bound on two idle cores "
                    f"max(...) = {bound:.2f} s = {args.rows / bound:,.0f} rows/s"
                )
            print(f"{cpu}; load average before/after {load_before} / {os.getloadavg()[0]:.2f}")
            if engine == "postgresql":
                floor = copy_floor(valid_path)
                valid = args.rows - bad_rows
                print(
                    f"COPY floor: {valid:,} valid rows into a bare temp table in {floor:.2f} s = "
                    f"{valid / floor:,.0f} rows/s; the import takes {elapsed / floor:.1f} times as long"
                )
                floor_rows, indexed_floor = indexed_copy_floor(account)
                print(
                    f"indexed COPY floor: the {floor_rows:,} leads written, into an empty table with the lead "
                    f"table's indexes, in {indexed_floor:.2f} s; the import takes {elapsed / indexed_floor:.1f} "
                    "times as long"
                )
        finally:
            setattr(imports.LeadWriter, bulk_name, real_bulk)
            if not args.keep:
                delete_account(account)


if __name__ == "__main__":
    main()
