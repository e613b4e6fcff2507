"""In real Chromium against a real ``nccid serve``: a few minutes before the session ends, the
page warns in a modal alert dialog (focused, keyboard operable, no axe findings) with the time
left and a "Sign in again"; at the end it goes to the sign-in page, which says the session
ended, and signing in there leads back to the page. The script asks the server nothing.

The session's end is moved near by writing its row in the portal's database, as the end of
8 hours would leave it: nothing sleeps, Playwright waits for what the page shows."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .live_server import live_portal, run_cli, server_env
from .test_accessibility import AXE_RUN, AXE_SOURCE, RULES

pytestmark = pytest.mark.browser

PASSWORD = "Walnut-Harbour-Lantern-7"
ENDED = "You were signed out because your session ended"
DIALOG = "Your session is about to end"


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    home = tmp_path_factory.mktemp("timeout-home")
    env = server_env(home)
    run_cli(env, "init")
    run_cli(env, "site", "add", "RTIM", "--name", "Royal Timeout Infirmary", "--ae-title", "RTIM_PACS")
    run_cli(env, "user", "add", "ursula", "--role", "uploader", "--site", "RTIM",
            "--password-stdin", stdin=PASSWORD + "\n")
    with live_portal(env, home / "serve.log") as url:
        yield url, home / "nccid.sqlite3"


def sign_in(page) -> None:
    page.get_by_label("Username").fill("ursula")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def end_session_in(page, database: Path, left: timedelta) -> None:
    """The browser's session now ends ``left`` from now, as stored (Django keeps UTC)."""
    key = next(c["value"] for c in page.context.cookies() if c["name"] == "sessionid")
    ends = (datetime.now(UTC) + left).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    with sqlite3.connect(database) as db:
        changed = db.execute("UPDATE django_session SET expire_date = ? WHERE session_key = ?",
                             (ends, key)).rowcount
    assert changed == 1


def signed_in_at_uploads(page, portal: str) -> None:
    page.goto(portal + "/uploads/")
    sign_in(page)
    page.wait_for_url(portal + "/uploads/")


def test_the_warning_comes_minutes_before_the_end_and_offers_to_sign_in_again(portal, page):
    url, database = portal
    signed_in_at_uploads(page, url)
    expect(page.get_by_text(re.compile(r"Signed in until \d\d:\d\d"))).to_be_visible()
    expect(page.get_by_role("alertdialog")).to_have_count(0)  # 8 hours left: no warning

    end_session_in(page, database, timedelta(minutes=4, seconds=30))
    page.reload()
    dialog = page.get_by_role("alertdialog", name=DIALOG)
    expect(dialog).to_be_visible()
    ends_at = page.locator("#session-ends time").inner_text()
    expect(dialog).to_contain_text(f"You will be signed out at {ends_at}, in less than 5 minutes")
    expect(dialog.get_by_role("button", name="Carry on")).to_be_focused()
    page.evaluate(AXE_SOURCE)  # by the DevTools protocol: the page's CSP forbids it
    result = page.evaluate(AXE_RUN, RULES)
    assert result["violations"] == [], result["violations"]

    # Keyboard: Tab moves between the dialog's buttons and the browser's own controls (BODY
    # here), never into the page behind (inert while the dialog is open); Escape closes it.
    page.keyboard.press("Shift+Tab")
    expect(dialog.get_by_role("button", name="Sign in again")).to_be_focused()
    focused = []
    for _ in range(4):
        page.keyboard.press("Tab")
        focused.append(page.evaluate(
            "document.activeElement.closest('dialog') ? document.activeElement.textContent.trim()"
            " : document.activeElement.tagName"))
    assert set(focused) == {"Sign in again", "Carry on", "BODY"}, focused
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.keyboard.press("Tab")  # the page is usable again: its first link takes the focus
    expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()

    # Sign in again: signed out (no "session ended": it did not), then back to this page.
    page.reload()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Sign in again").press("Enter")
    page.wait_for_url(re.compile(r"/login/\?next=%2Fuploads%2F$"))
    expect(page.get_by_text(ENDED)).to_have_count(0)
    sign_in(page)
    page.wait_for_url(url + "/uploads/")
    expect(page.get_by_role("alertdialog")).to_have_count(0)  # a new session: 8 hours


def test_at_the_end_the_page_goes_to_sign_in_which_says_the_session_ended(portal, page):
    url, database = portal
    signed_in_at_uploads(page, url)
    end_session_in(page, database, timedelta(seconds=3))
    sent = []
    page.on("request", lambda request: sent.append((request.resource_type, request.url)))
    page.reload()
    expect(page.get_by_role("alertdialog", name=DIALOG)).to_contain_text("in less than a minute")
    page.wait_for_url(re.compile(r"/login/\?next=%2Fuploads%2F$"))
    expect(page.get_by_text(ENDED)).to_be_visible()
    # Between the page and the sign-in page the script sent nothing (it cannot extend the
    # session): the only documents are the two, the rest the portal's static files.
    documents = [u for kind, u in sent if kind == "document"]
    assert documents == [url + "/uploads/", url + "/login/?next=%2Fuploads%2F"], sent
    assert all("/static/" in u for kind, u in sent if kind != "document"), sent
    sign_in(page)
    page.wait_for_url(url + "/uploads/")
    expect(page.get_by_text(re.compile(r"Signed in until \d\d:\d\d"))).to_be_visible()
