"""The conformance kit's report.html, as a person opens it (FR-175): in headless
Chromium, the verdict and the table of ids are what the first screen shows, and nothing
on the page is raw JSON."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CHROMIUM_FLAGS, chromium
from playwright.sync_api import expect, sync_playwright

KIT = Path(sys.executable).with_name("todo-conformance")


@pytest.mark.req("FR-175")
def test_report_html_opens_with_the_verdict_and_the_table_of_ids(
    live_service: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [str(KIT), "run", "--base-url", live_service, "--report-dir", str(tmp_path),
         "--only", "FR-008,FR-010,FR-014", "--fuzz-examples", "0"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto((tmp_path / "report.html").as_uri())
        verdict = page.locator("h1 .verdict")
        expect(verdict).to_have_text("PASSED")
        expect(verdict).to_be_in_viewport()
        table = page.locator("table#requirements")
        expect(table).to_be_in_viewport()
        expect(table.locator("tbody tr").first).to_be_in_viewport()
        rows = table.locator("tbody tr")
        expect(rows).to_have_count(3)
        expect(rows.filter(has_text="FR-014")).to_contain_text("pass")
        text = page.locator("body").inner_text()
        assert '{"' not in text and '"requirements"' not in text, "raw JSON on the page"
        browser.close()
