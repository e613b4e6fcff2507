"""A site user walks every page of the header in real Chromium against a real ``nccid serve``.

Screenshots of each page go to test-output/screenshots/ for review.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from .live_server import Account, Site, live_portal, portal_on, prepared_home, run_cli

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[4]
SCREENSHOTS = Path(os.environ.get("NCCID_TEST_OUTPUT", REPO / "test-output")) / "screenshots"
PASSWORD = "Walnut-Harbour-Lantern-7"
NEW_PASSWORD = "Copper-Meadow-Falcon-31"
SITE, SITE_NAME = "RBROW", "Royal Browser Infirmary"

WITH_SITE = {"site": Site(SITE, SITE_NAME, "RBROW_PACS"), "password": PASSWORD}  # both homes


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    home = tmp_path_factory.mktemp("portal-home")
    with portal_on(home, accounts=[Account("alice", "uploader", SITE)], **WITH_SITE) as url:
        yield url


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def header_link(page, text: str):
    """A header link; on a narrow header the NHS.UK script folds some under "More"."""
    link = page.locator("header.nhsuk-header").get_by_role("link", name=text, exact=True)
    toggle = page.locator("#toggle-menu")
    if not link.is_visible() and toggle.is_visible():
        toggle.click()
    return link


def test_site_user_walks_every_page_of_the_header(portal, page, tmp_path):
    from nccid.synthetic.clinical import write_sheet
    from nccid.synthetic.people import people

    # Sign in.
    page.goto(portal + "/")
    assert page.url.startswith(portal + "/login/")
    shot(page, "01-login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(portal + "/")
    assert SITE_NAME in page.content()
    shot(page, "02-home")

    # Guidance And Documentation and FAQ.
    header_link(page, "Guidance And Documentation").click()
    page.get_by_role("heading", name="Guidance And Documentation", level=1).wait_for()
    assert "RBROW_PACS" in page.content() and "NCCID" in page.locator("#node-details").inner_text()
    shot(page, "03-guidance")
    header_link(page, "FAQ").click()
    page.get_by_role("heading", name="Frequently asked questions").wait_for()
    shot(page, "04-faq")

    # The other two upload pages and their templates.
    for kind, text, title in (
        ("negative", "Upload Covid Status (Negative) Data", "Covid-19 Status (Negative) Template v1.0"),
        ("isaric", "Upload Covid ISARIC Data", "ISARIC-4C Core Data Template v1.0"),
    ):
        header_link(page, text).click()
        page.get_by_role("heading", name=text, level=1).wait_for()
        assert title in page.content()
        shot(page, f"05-upload-{kind}")

    # Positive upload: download the template.
    header_link(page, "Upload Covid (Positive) Data").click()
    page.get_by_role("heading", name="Upload Covid (Positive) Data", level=1).wait_for()
    shot(page, "06-upload-positive")
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Download the Covid-19 Data \\(Positive\\)")).click()
    template = tmp_path / download.value.suggested_filename
    download.value.save_as(template)
    assert template.suffix == ".xlsx" and template.stat().st_size > 1000

    # Upload a sheet with errors and read them.
    patients = people(6, seed=4)  # seed * 100000 must stay within 6 digits
    spoiled = tmp_path / "positive-with-errors.xlsx"
    planted = write_sheet("positive", patients, spoiled, errors=2, seed=5)
    page.locator("input[type=file][name=file]").set_input_files(str(spoiled))
    page.get_by_role("button", name="Check the file").click()
    page.get_by_role("heading", name="Check your upload").wait_for()
    summary = page.locator(".nhsuk-error-summary")
    assert "problem" in summary.inner_text()
    table = page.locator("#error-table tbody tr")
    assert table.count() >= len(planted)
    cells = page.locator("#error-table").inner_text()
    for row, header in planted:
        assert str(row) in cells and header.split(" (")[0] in cells
    assert page.locator("#count-rejected").inner_text().strip() == str(len(planted))
    shot(page, "07-preview-with-errors")
    with page.expect_download() as errors_csv:
        page.get_by_role("link", name="Download errors as CSV").click()
    csv_path = tmp_path / "errors.csv"
    errors_csv.value.save_as(csv_path)
    assert csv_path.read_text(encoding="utf-8-sig").count("\n") >= len(planted) + 1
    page.get_by_role("button", name="Cancel this upload").click()
    page.wait_for_url(re.compile(r"/uploads/"))

    # Upload the fixed sheet and confirm it.
    fixed = tmp_path / "positive-fixed.xlsx"
    write_sheet("positive", patients, fixed, errors=0, seed=5)
    header_link(page, "Upload Covid (Positive) Data").click()
    page.locator("input[type=file][name=file]").set_input_files(str(fixed))
    page.get_by_role("button", name="Check the file").click()
    page.get_by_role("heading", name="Check your upload").wait_for()
    assert page.locator(".nhsuk-error-summary").count() == 0
    assert page.locator("#count-new").inner_text().strip() == str(len(patients))
    shot(page, "08-preview-clean")
    page.get_by_role("button", name=re.compile("Confirm and import")).click()
    page.wait_for_url(re.compile(r"/uploads/$"))

    # My uploads lists it as accepted.
    page.get_by_text("Upload accepted").first.wait_for()
    uploads = page.locator("#upload-table").inner_text()
    assert "Accepted" in uploads and "Cancelled" in uploads
    shot(page, "09-my-uploads")

    # The summary counts the new patients: exactly in the site's own figures (the national
    # ones are rounded to the nearest 5 for a site).
    header_link(page, "Summary").click()
    page.wait_for_load_state()
    assert page.locator("#your-site-patients").inner_text().strip() == str(len(patients))
    assert "rounded to the nearest 5" in page.locator("#summary-table caption").inner_text()
    shot(page, "10-summary")

    # Change password, sign out, sign in with the new one.
    page.get_by_role("link", name="Change Password").click()
    page.get_by_label("Old password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password confirmation").fill(NEW_PASSWORD)
    shot(page, "11-change-password")
    page.get_by_role("button", name="Change password").click()
    page.get_by_text("Your password has been changed.").wait_for()
    page.get_by_role("button", name="Logout").click()
    page.wait_for_url(re.compile(r"/login/"))
    shot(page, "12-logged-out")
    page.goto(portal + "/uploads/")
    assert "/login/" in page.url
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/uploads/$"))


@pytest.fixture(scope="module")
def review_portal(tmp_path_factory):
    """A portal with a data manager and one image held at intake for burned-in text."""
    from nccid.synthetic.dicom import synthetic_instance, to_bytes
    from nccid.synthetic.people import people

    home = tmp_path_factory.mktemp("review-home")
    env = prepared_home(home, accounts=[Account("dora", "data-manager")], **WITH_SITE)
    person = people(1, seed=8)[0]
    ds = synthetic_instance(person, modality="CR", patient_id=person.nhs_number, rows=256,
                            columns=256)
    ds.BurnedInAnnotation = "YES"
    burned = home / "burned.dcm"
    burned.write_bytes(to_bytes(ds))
    summary = run_cli(env, "images", "import", "--site", SITE, str(burned))
    assert re.search(r"held\s+│\s+1\s", summary), summary
    with live_portal(env, home / "serve.log") as url:
        yield url


def test_a_data_manager_sees_a_held_image_then_rejects_it(review_portal, page):
    page.goto(review_portal + "/review/")
    page.get_by_label("Username").fill("dora")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Review queue", level=1).wait_for()
    preview = page.locator(".portal-held-preview img")
    assert preview.count() == 1
    preview.scroll_into_view_if_needed()  # loaded lazily
    page.wait_for_function(
        "() => { const i = document.querySelector('.portal-held-preview img');"
        " return i.complete && i.naturalWidth === 256 && i.naturalHeight === 256; }")
    shot(page, "20-review-queue")
    page.get_by_role("button", name="Reject image").click()
    page.get_by_role("heading", name=re.compile(r"^Reject image \d+\?$"), level=1).wait_for()
    page.get_by_role("link", name="Cancel").click()  # asked, nothing decided
    page.get_by_role("heading", name="Review queue", level=1).wait_for()
    page.get_by_role("button", name="Reject image").click()
    shot(page, "21-reject-confirm")
    page.get_by_role("button", name=re.compile("Confirm rejection of image")).click()
    page.get_by_text("rejected and deleted").wait_for()
    assert page.locator(".portal-held-preview img").count() == 0
    assert "No image is waiting for review" in page.locator("main").inner_text()
