"""Two tabs of one browser agree on when the session ends. A new session started in one tab
(Sign in again, or a password change, which starts a new one) moves the other tab's end: its
warning closes, its header says the new end, and at the old end it neither leaves the page nor
holds back a form, so nothing typed there is lost. The tabs tell each other through the
browser (localStorage): neither asks the server.

Real Chromium against a real ``nccid serve``; the session's end is moved near by writing its
row, and the tabs' clock (Playwright's, shared by the context) is moved past it: no sleeps."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from .live_server import Account, Site, portal_on
from .test_browser_session_timeout_warning import DIALOG, PASSWORD, end_session_in, sign_in

pytestmark = pytest.mark.browser

TYPED = "Birch-Lantern-Harbour-3"
CHANGED = "Quartz-Meadow-Falcon-9"


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    home = tmp_path_factory.mktemp("two-tabs-home")
    with portal_on(home, site=Site("RTAB", "Royal Tabs Infirmary", "RTAB_PACS"),
                   accounts=[Account(name, "uploader", "RTAB") for name in ("ursula", "victor")],
                   password=PASSWORD) as url:
        yield url, home / "nccid.sqlite3"


def two_tabs_near_the_end(page, url: str, database, username: str):
    """Tab A signed in at My uploads, tab B at the password form, both warned: 4½ minutes left."""
    page.context.clock.install()  # the tabs' clock: moved past the old end instead of waiting
    page.goto(url + "/uploads/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(url + "/uploads/")
    end_session_in(page, database, timedelta(minutes=4, seconds=30))
    page.reload()
    other = page.context.new_page()
    other.goto(url + "/password/")
    for tab in (page, other):
        expect(tab.get_by_role("alertdialog", name=DIALOG)).to_be_visible()
    return other


def requests_of(tab) -> list:
    sent = []
    tab.on("request", lambda request: sent.append((request.method, request.url)))
    return sent


def test_signing_in_again_in_one_tab_moves_the_other_tabs_end(portal, page):
    url, database = portal
    other = two_tabs_near_the_end(page, url, database, "ursula")
    page.get_by_role("alertdialog").get_by_role("button", name="Sign in again").click()
    page.wait_for_url(re.compile(r"/login/\?next=%2Fuploads%2F$"))
    sign_in(page)
    page.wait_for_url(url + "/uploads/")
    new_end = page.locator("#session-ends time").inner_text()

    expect(other.get_by_role("alertdialog")).to_be_hidden()  # closed by the new session
    expect(other.locator("#session-ends time")).to_have_text(new_end)
    expect(other.locator("[data-session-ends-at]")).to_have_text(new_end)
    other.get_by_label("Old password").fill(TYPED)
    sent = requests_of(other)
    # Past the old end, to under 4 minutes before the new one: tab B warns of the new end, on its page.
    other.context.clock.fast_forward("07:56:00")
    expect(other.get_by_role("alertdialog", name=DIALOG)).to_contain_text(
        f"You will be signed out at {new_end}, in less than 4 minutes")
    assert other.url == url + "/password/"
    expect(other.get_by_label("Old password")).to_have_value(TYPED)
    assert sent == [], sent  # told by tab A, not by the server


def test_a_password_change_in_one_tab_lets_the_other_send_its_form_after_the_old_end(portal, page):
    url, database = portal
    other = two_tabs_near_the_end(page, url, database, "victor")
    page.keyboard.press("Escape")
    page.goto(url + "/password/")  # tab A changes the password: a new session of 8 hours
    page.keyboard.press("Escape")
    page.get_by_label("Old password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill(CHANGED)
    page.get_by_label("New password confirmation").fill(CHANGED)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Your password has been changed.")).to_be_visible()
    new_end = page.locator("#session-ends time").inner_text()
    expect(other.get_by_role("alertdialog")).to_be_hidden()
    expect(other.locator("#session-ends time")).to_have_text(new_end)

    # Tab B sends its form after the old end (no timer run: only the sending sees the time).
    other.context.clock.pause_at(datetime.now(UTC) + timedelta(seconds=1))
    other.context.clock.set_system_time(datetime.now(UTC) + timedelta(minutes=5))
    other.get_by_label("Old password").fill(TYPED)
    other.get_by_label("New password", exact=True).fill(TYPED)
    other.get_by_label("New password confirmation").fill(TYPED + "x")
    sent = requests_of(other)
    other.get_by_role("button", name="Change password").click()
    expect(other.get_by_role("link", name="The two password fields didn’t match.")).to_be_visible()
    assert other.url == url + "/password/"
    assert sent[0] == ("POST", url + "/password/"), sent  # sent as it was, nothing asked first
