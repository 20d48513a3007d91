"""The CSV import in a real browser (headless Chromium against the live server): the
owner picks a file with two good rows and a bad one on the import page and reads the
report, down to the bad row's number, column and reason."""

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from leads.models import Lead

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CSV = b"name,phone,status\nAsha Rao,98765 00001,contacted\nBilal Khan,98765 00002,won\nChitra Iyer,98765 00003,\n"


def test_import_a_csv_with_a_bad_row_and_read_the_report(owner_page, account):
    page = owner_page
    page.goto("/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Import").click()
    expect(page.get_by_role("heading", name="Import leads")).to_be_visible()

    page.get_by_label("CSV file").set_input_files(files=[{"name": "leads.csv", "mimeType": "text/csv", "buffer": CSV}])
    page.get_by_role("button", name="Import").click()

    expect(page).to_have_url(re.compile(r"/leads/import/report/"))
    expect(page.get_by_role("heading", name="Import report")).to_be_visible()
    expect(page.get_by_test_id("created-count")).to_have_text("2")
    expect(page.get_by_test_id("updated-count")).to_have_text("0")
    expect(page.get_by_test_id("skipped-count")).to_have_text("1")
    bad_rows = page.locator("table.import-errors tbody tr")
    expect(bad_rows).to_have_count(1)
    cells = bad_rows.first.locator("td")
    expect(cells.nth(0)).to_have_text("3")
    expect(cells.nth(1)).to_have_text("status")
    expect(cells.nth(2)).to_contain_text("won")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download errors as CSV").click()
    content = Path(download.value.path()).read_text(encoding="utf-8-sig").splitlines()
    assert content[0] == "row,field,reason"
    assert content[1].startswith("3,status,")

    assert sorted(Lead.objects.filter(account=account).values_list("name", flat=True)) == ["Asha Rao", "Chitra Iyer"]
    assert page.console_errors == []
