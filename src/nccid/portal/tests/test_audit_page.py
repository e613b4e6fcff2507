"""The audit log page: data managers see who did what and why, newest first, filtered by kind
of action, account and pseudonym, a page at a time."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils.timezone import localtime

from nccid.accounts.models import audit

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _rows(html: str) -> list[str]:
    body = html.split('<tbody class="nhsuk-table__body">', 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr class=\"nhsuk-table__row\">(.*?)</tr>", body, re.S)


def test_the_audit_log_filters_by_kind_account_and_pseudonym(client, make_user):
    manager = make_user("data-manager", username="dm.audit")
    audit(manager, "vault.reveal", pseudonym="NCCID-AAAAAAAAAAAAAAAA", reason="site query 4")
    audit(manager, "patient.withdraw", pseudonym="NCCID-BBBBBBBBBBBBBBBB", reason="objected",
          images=3)
    audit("reader1", "research.export", filter={}, sets=["training"])
    client.force_login(manager)
    page = reverse("figures:audit")
    everything = client.get(page).content.decode()
    assert len(_rows(everything)) == 3
    assert everything.index("research.export") < everything.index("vault.reveal")  # newest first
    vault = client.get(page, {"kind": "vault"}).content.decode()
    assert [("vault.reveal" in r, "site query 4" in r) for r in _rows(vault)] == [(True, True)]
    by_user = client.get(page, {"user": "reader"}).content.decode()
    assert len(_rows(by_user)) == 1 and "research.export" in by_user
    by_patient = client.get(page, {"pseudonym": "nccid-bbbbbbbbbbbbbbbb"}).content.decode()
    assert len(_rows(by_patient)) == 1 and "images=3" in by_patient
    unknown_kind = client.get(page, {"kind": "no-such-kind"}).content.decode()
    assert len(_rows(unknown_kind)) == 3  # an unknown kind filters nothing
    assert "No event matches" in client.get(page, {"user": "nobody"}).content.decode()


def test_the_audit_log_comes_fifty_events_a_page(client, make_user):
    manager = make_user("data-manager")
    for n in range(51):
        audit(manager, "research.cohort", filter={"n": n})
    client.force_login(manager)
    first = client.get(reverse("figures:audit")).content.decode()
    second = client.get(reverse("figures:audit"), {"page": 2}).content.decode()
    assert (len(_rows(first)), len(_rows(second))) == (50, 1)
    assert "filter={&quot;n&quot;:0}" in second and "51 events" in first


def test_an_events_time_and_detail_are_shown_whole(client, make_user):
    manager = make_user("data-manager")
    audit(manager, "imaging.held.view", site="RTH", sop_uid="2.25." + "7" * 39)
    client.force_login(manager)
    html = client.get(reverse("figures:audit")).content.decode()
    (row,) = _rows(html)
    shown = localtime().strftime("%-d %b %Y")
    assert f">{shown} " in row  # as every page of the portal shows a date
    detail = re.search(r'<td class="[^"]*portal-audit-detail[^"]*">(.*?)</td>', row, re.S).group(1)
    assert detail == "site=RTH; sop_uid=2.25." + "7" * 39
    assert "portal-wrap" in row  # a long UID wraps in its cell instead of being cut off


def test_api_token_events_have_a_kind_of_their_own(client, make_user):
    from nccid.accounts.services import issue_token, revoke_tokens

    manager = make_user("data-manager", username="dm.tokens")
    uploader = make_user("uploader", username="up.tokens")
    made, _ = issue_token(uploader.username, "nightly", actor=manager.username)
    revoke_tokens([made.pk], actor=manager.username)
    audit(manager, "vault.reveal", pseudonym="NCCID-AAAAAAAAAAAAAAAA", reason="site query 5")
    client.force_login(manager)
    tokens = client.get(reverse("figures:audit"), {"kind": "token"}).content.decode()
    assert [("token.revoke" in r, "token.issue" in r) for r in _rows(tokens)] == [
        (True, False), (False, True)]
    assert "API tokens (issued, revoked)" in tokens
