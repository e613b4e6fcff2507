"""In real Chromium against a real ``nccid serve``: a few minutes before the session ends, the
page warns in a modal alert dialog (focused, keyboard operable, no axe findings) with the time
left and a "Sign in again"; at the end it goes to the sign-in page, which says the session
ended, and signing in there leads back to the page. The script asks the server one thing, once,
at the end it was given: how long the session has left (GET /session/left/, which moves no
end); while the session lasts (a new one, started where no page shared it) the page stays, and
a form sent meanwhile is sent, not lost.

The session's end is moved near by writing its row in the portal's database, as the end of
8 hours would leave it, and the page's clock is moved past it (Playwright's clock): nothing
sleeps, Playwright waits for what the page shows."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from .live_server import Account, Site, portal_on
from .test_accessibility import AXE_RUN, AXE_SOURCE, RULES

pytestmark = pytest.mark.browser

PASSWORD = "Walnut-Harbour-Lantern-7"
ENDED = "You were signed out because your session ended"
DIALOG = "Your session is about to end"


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    home = tmp_path_factory.mktemp("timeout-home")
    with portal_on(home, site=Site("RTIM", "Royal Timeout Infirmary", "RTIM_PACS"),
                   accounts=[Account("ursula", "uploader", "RTIM")], password=PASSWORD) as url:
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


def stored_end(page, database: Path, key: str | None = None) -> str:
    """The session's end as stored: the browser's session, or the one named ``key``."""
    key = key or next(c["value"] for c in page.context.cookies() if c["name"] == "sessionid")
    with sqlite3.connect(database) as db:
        return db.execute("SELECT expire_date FROM django_session WHERE session_key = ?",
                          (key,)).fetchone()[0]


def london_clock(stored: str) -> re.Pattern:
    """The header's "17:40" (or "06:30 tomorrow") for an end as stored (UTC)."""
    at = datetime.fromisoformat(stored).replace(tzinfo=UTC).astimezone(ZoneInfo("Europe/London"))
    return re.compile(rf"^{at:%H:%M}( tomorrow)?$")


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
    key = next(c["value"] for c in page.context.cookies() if c["name"] == "sessionid")
    ended_at = stored_end(page, database, key)
    page.wait_for_url(re.compile(r"/login/\?next=%2Fuploads%2F$"))
    expect(page.get_by_text(ENDED)).to_be_visible()
    # Between the page and the sign-in page the script asked once how long was left: the only
    # documents are the two, one fetch of /session/left/, the rest the portal's static files;
    # the session's stored end is as it was.
    documents = [u for kind, u in sent if kind == "document"]
    assert documents == [url + "/uploads/", url + "/login/?next=%2Fuploads%2F"], sent
    assert [(kind, u) for kind, u in sent if "/static/" not in u and kind != "document"] == [
        ("fetch", url + "/session/left/")], sent
    assert stored_end(page, database, key) == ended_at
    sign_in(page)
    page.wait_for_url(url + "/uploads/")
    expect(page.get_by_text(re.compile(r"Signed in until \d\d:\d\d"))).to_be_visible()


TYPED = "Cedar-Meadow-Signal-4"


def test_at_its_end_a_page_stays_while_the_server_says_the_session_lasts(portal, page):
    """The end the page was given is not the session's (a new session no page shared): at that
    end the page asks, stays with what was typed, and takes the server's end."""
    url, database = portal
    page.context.clock.install()  # the page's clock: moved past the end instead of waiting
    signed_in_at_uploads(page, url)
    end_session_in(page, database, timedelta(minutes=4, seconds=30))
    page.goto(url + "/password/")
    dialog = page.get_by_role("alertdialog", name=DIALOG)
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    page.get_by_label("Old password").fill(TYPED)
    end_session_in(page, database, timedelta(hours=7, minutes=50))
    ends = stored_end(page, database)
    sent = []
    page.on("request", lambda request: sent.append((request.method, request.url)))

    with page.expect_response(url + "/session/left/"):
        page.context.clock.fast_forward("05:00")  # past the end the page was given
    expect(dialog).to_be_hidden()
    expect(page.locator("#session-ends time")).to_have_text(london_clock(ends))
    assert page.url == url + "/password/"
    expect(page.get_by_label("Old password")).to_have_value(TYPED)
    assert sent == [("GET", url + "/session/left/")], sent
    assert stored_end(page, database) == ends  # asking moved nothing


def test_a_form_sent_after_the_pages_end_is_sent_while_the_session_lasts(portal, page):
    url, database = portal
    page.context.clock.install()
    signed_in_at_uploads(page, url)
    end_session_in(page, database, timedelta(minutes=4, seconds=30))
    page.goto(url + "/password/")
    page.keyboard.press("Escape")  # Carry on
    page.get_by_label("Old password").fill(TYPED)
    page.get_by_label("New password", exact=True).fill("Willow-Quarry-Beacon-5")
    page.get_by_label("New password confirmation").fill("Willow-Quarry-Beacon-6")
    end_session_in(page, database, timedelta(hours=7, minutes=50))
    # Past the page's end with no timer run: only the form's sending sees it.
    page.context.clock.pause_at(datetime.now(UTC) + timedelta(seconds=1))
    page.context.clock.set_system_time(datetime.now(UTC) + timedelta(minutes=5))
    sent = []
    page.on("request", lambda request: sent.append((request.method, request.url)))
    page.get_by_role("button", name="Change password").click()
    # The server had the form: its error summary says what it found.
    expect(page.get_by_role("link", name="The two password fields didn’t match.")).to_be_visible()
    assert page.url == url + "/password/"
    assert sent[:2] == [("GET", url + "/session/left/"), ("POST", url + "/password/")], sent
