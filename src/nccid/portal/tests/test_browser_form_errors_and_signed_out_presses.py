"""In real Chromium against a real ``nccid serve``: the vault, withdraw and remove-study forms
sent back with errors move the focus to their error summary and title the page "Error: ...",
as the upload form does; and Confirm pressed after the session ended signs in back to the
check page (it was a blank "HTTP ERROR 405")."""

from __future__ import annotations

import re

import pytest

from .live_server import Account, Site, portal_on

pytestmark = pytest.mark.browser

PASSWORD = "Walnut-Harbour-Lantern-7"


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    home = tmp_path_factory.mktemp("focus-home")
    with portal_on(home, site=Site("RFOC", "Royal Focus Infirmary", "RFOC_PACS"),
                   accounts=[Account("dora", "data-manager"), Account("ursula", "uploader", "RFOC")],
                   password=PASSWORD) as url:
        yield url


def sign_in(page, portal: str, username: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def focused(page) -> str:
    return page.evaluate("document.activeElement.className")


@pytest.mark.parametrize(("path", "field", "button", "name"), [
    ("/vault/", None, "Reveal", "Reveal an NHS/CHI number"),
    ("/withdraw/", None, "Find the patient", "Withdraw a patient"),
    ("/remove-study/", "Study Instance UID", "Find the study", "Remove a study"),
])
def test_a_form_sent_back_with_errors_takes_the_focus_to_its_summary(portal, page, path, field,
                                                                       button, name):
    page.goto(portal + path)
    sign_in(page, portal, "dora")
    page.wait_for_url(portal + path)
    if field:
        page.get_by_label(field).fill("1.2.3.4")
    page.get_by_role("button", name=button).click()
    page.locator(".nhsuk-error-summary").wait_for()
    page.wait_for_function("document.activeElement.classList.contains('nhsuk-error-summary')")
    assert "nhsuk-error-summary" in focused(page)
    assert page.title().startswith(f"Error: {name}")


def _check_a_clean_sheet(portal, page, tmp_path, seed: int) -> None:
    """Ursula signs in and checks a clean positive sheet: the page is its check page."""
    from nccid.synthetic.clinical import write_sheet
    from nccid.synthetic.people import people

    sheet = tmp_path / "positive.xlsx"
    write_sheet("positive", people(2, seed=seed, site_prefix="RFOC"), sheet, errors=0, seed=3)
    page.goto(portal + "/upload/positive/")
    sign_in(page, portal, "ursula")
    page.wait_for_url(portal + "/upload/positive/")
    page.locator("input[type=file][name=file]").set_input_files(str(sheet))
    page.get_by_role("button", name="Check the file").click()
    page.get_by_role("heading", name="Check your upload").wait_for()


def test_confirm_pressed_after_the_session_ended_signs_in_back_to_the_check_page(portal, page,
                                                                                 tmp_path):
    _check_a_clean_sheet(portal, page, tmp_path, seed=45)
    check_page = page.url
    context = page.context
    kept = [c for c in context.cookies() if c["name"] != "sessionid"]  # the session ends
    context.clear_cookies()
    context.add_cookies(kept)
    page.get_by_role("button", name=re.compile("Confirm and import")).click()
    page.wait_for_url(re.compile(r"/login/"))
    sign_in(page, portal, "ursula")
    page.wait_for_url(check_page)
    page.get_by_role("heading", name="Check your upload").wait_for()
    assert page.get_by_role("button", name=re.compile("Confirm and import")).is_visible()


def test_an_error_told_after_a_redirect_takes_the_focus_and_names_the_title(portal, page,
                                                                             tmp_path):
    """Confirm pressed on a check page whose upload was cancelled in another tab: the error,
    a message shown after the redirect, is focused and titled as a form's error is."""
    _check_a_clean_sheet(portal, page, tmp_path, seed=48)
    other_tab = page.context.new_page()
    other_tab.goto(page.url)
    other_tab.get_by_role("button", name=re.compile("Cancel")).click()
    other_tab.get_by_text("Upload cancelled: nothing from this file was saved.").wait_for()
    page.get_by_role("button", name=re.compile("Confirm and import")).click()
    page.get_by_text("cannot be confirmed").wait_for()
    page.wait_for_function("document.activeElement.classList.contains('nhsuk-error-summary')")
    assert page.title().startswith("Error: Upload cancelled")
