"""``nccid serve``'s access log keeps request paths only: a query string (and the Referer
header's) holds what a user typed into a search box, an NHS number sometimes."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request

from nccid.synthetic.people import people, spaced

from .live_server import Account, live_portal, prepared_home

PASSWORD = "Correct-Horse-Battery-9"
PERSON = people(1, seed=19)[0]


def _signed_in(base: str, username: str) -> urllib.request.OpenerDirector:
    browser = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    login = browser.open(base + "/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login).group(1)
    form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": username,
                                   "password": PASSWORD}).encode()
    browser.open(urllib.request.Request(base + "/login/", data=form,
                                        headers={"Referer": base + "/login/"}))
    return browser


def _status(browser, url: str, **headers: str) -> int:
    try:
        return browser.open(urllib.request.Request(url, headers=headers)).status
    except urllib.error.HTTPError as refused:  # 400, 403: still a line in the access log
        return refused.code


def test_the_access_log_keeps_paths_but_no_query_string_or_referrer_query(tmp_path):
    env = prepared_home(tmp_path, accounts=[Account("dm.log", "data-manager")], password=PASSWORD)
    log = tmp_path / "serve.log"
    number = PERSON.nhs_number
    with live_portal(env, log) as base:
        browser = _signed_in(base, "dm.log")
        statuses = (
            _status(browser, f"{base}/audit/?{urllib.parse.urlencode({'pseudonym': spaced(number)})}"),
            _status(browser, f"{base}/audit/?user={PERSON.hospital_number}",
                    Referer=f"{base}/withdraw/?patient={number}"),
            _status(browser, f"{base}/admin/clinical/patientlink/?q={number}"),
        )
    # read once the server has stopped: every line is written by then
    lines = log.read_text().splitlines()
    assert statuses == (400, 200, 403)
    assert sum('"GET /audit/ HTTP/1.1" 400 ' in line for line in lines) == 1
    [with_referrer] = [line for line in lines if '"GET /audit/ HTTP/1.1" 200 ' in line]
    assert f'"{base}/withdraw/"' in with_referrer  # the referrer's path, its query cut
    assert any('"GET /admin/clinical/patientlink/ HTTP/1.1" 403 ' in line for line in lines)
    text = "\n".join(lines)
    for typed in (number, spaced(number), spaced(number).replace(" ", "+"), PERSON.hospital_number):
        assert typed not in text
    requested = [line.split('"')[1] for line in lines if ' HTTP/1.1" ' in line]
    assert len(requested) >= 6 and not [line for line in requested if "?" in line]
