"""A signed-in page or API answer is never kept in the browser's cache (a shared workstation's
disk cache kept My uploads, with a site's pseudonyms, after signing out): every route of the
URL map, for every role, by session and by API token, answers ``Cache-Control: no-store``;
every API answer does, signed in or not. Static files and anonymous pages keep their caching.

Routes are enumerated from the URL map, so a page added later is covered; a route with a
parameter this test has no value for fails until it is given one."""

from __future__ import annotations

import itertools
import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern

from nccid.accounts.models import ApiToken
from nccid.clinical import services as clinical
from nccid.imaging.intake import ingest
from nccid.imaging.models import HeldImage
from nccid.synthetic.clinical import write_sheet
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

ROLES = ("uploader", "data-manager", "researcher", "admin")
# Pages a reviewer found kept in Chromium's disk cache after signing out; each must really be
# shown (200) to some role here, so the check is of the page and not of a refusal.
FOUND_CACHED = ["/", "/guidance/", "/password/", "/summary/", "/dashboard/", "/review/",
                "/uploads/", "/uploads/{upload}/", "/uploads/{upload}/errors.csv",
                "/api/me", "/api/summary", "/api/uploads", "/api/uploads/{upload}",
                "/api/studies", "/api/review/held"]
# A value for each URL parameter: the objects' own where a route names one.
PARAMETERS = {
    "kind": lambda route, objects: "positive",
    "name": lambda route, objects: "age",  # a dashboard chart
    "action": lambda route, objects: "reject",
    "pk": lambda route, objects: objects["held" if route.startswith("review/") else "upload"],
    "upload_id": lambda route, objects: objects["upload"],
    "held_id": lambda route, objects: objects["held"],
    "object_id": lambda route, objects: objects["upload"],  # the admin's
    "id": lambda route, objects: objects["account"],  # the admin's password page
    "content_type_id": lambda route, objects: 1,
    "app_label": lambda route, objects: "accounts",
    "url": lambda route, objects: "no-such-page",  # the admin's catch-all
    "address": lambda route, objects: "no-such-answer",  # the API's catch-all
}


def routes() -> list[str]:
    """Every route of the URL map, its parameters left as written."""
    found: list[str] = []

    def walk(patterns, prefix: str) -> None:
        for entry in patterns:
            text = prefix + _without_anchors(entry.pattern)
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, text)
            elif isinstance(entry, URLPattern):
                found.append(text)

    walk(get_resolver().url_patterns, "")
    return list(dict.fromkeys(found))


def _without_anchors(pattern) -> str:
    text = str(pattern)
    return text.lstrip("^").rstrip("$") if isinstance(pattern, RegexPattern) else text


# <converter:name> or <name> (path), (?P<name>...) (re_path)
PARAMETER = re.compile(r"<(?:\w+:)?(?P<path>\w+)>|\(\?P<(?P<regex>\w+)>[^)]*\)")


def address(route: str, objects: dict) -> str:
    def value(match: re.Match) -> str:
        name = match["path"] or match["regex"]
        assert name in PARAMETERS, f"{route}: give URL parameter {name!r} a value in PARAMETERS"
        return str(PARAMETERS[name](route, objects))

    return "/" + PARAMETER.sub(value, route)


_instances = itertools.count(1)


@pytest.fixture
def objects(site, keyring, tmp_path, users):
    """An upload with errors and a held image, both of the uploader's site; an account."""
    sheet = tmp_path / "sheet.xlsx"
    write_sheet("positive", people(2, seed=24), sheet, errors=1, seed=24)
    upload = clinical.preview_upload(site, "positive", "sheet.xlsx", sheet.read_bytes(), None)
    person = people(1, seed=25)[0]
    image = synthetic_instance(person, patient_id=person.nhs_number, instance=next(_instances))
    image.BurnedInAnnotation = "YES"
    held = HeldImage.objects.get(sop_uid=ingest(to_bytes(image), site, "test").sop_uid)
    return {"upload": upload.pk, "held": held.pk, "account": users["uploader"].pk}


@pytest.fixture
def users(site, make_user):
    return {role: make_user(role, site=site if role in ("uploader", "researcher") else None)
            for role in ROLES}


def _not_stored(response) -> bool:
    return "no-store" in response.get("Cache-Control", "")


def _walk(client, addresses, **headers) -> dict[str, tuple[int, bool]]:
    """Each address's status and whether its answer forbids storing it."""
    seen = {}
    for url in addresses:
        response = client.get(url, **headers)
        seen[url] = (response.status_code, _not_stored(response))
    return seen


def _stored(seen: dict[str, tuple[int, bool]]) -> list[tuple[str, int]]:
    """The addresses whose answer a browser may keep, with their status."""
    return [(url, status) for url, (status, not_stored) in seen.items() if not not_stored]


def test_every_signed_in_answer_is_never_stored(client, objects, users):
    addresses = [address(route, objects) for route in routes()]
    shown = set()
    for role in ROLES:
        client.force_login(users[role])
        seen = _walk(client, addresses)
        assert not _stored(seen), f"{role}: {_stored(seen)}"
        shown |= {url for url, (status, _) in seen.items() if status == 200}
        client.logout()
    assert {url.format(**objects) for url in FOUND_CACHED} <= shown


def test_every_answer_to_an_api_token_is_never_stored(client, objects, users):
    api = [url for url in (address(route, objects) for route in routes()) if url.startswith("/api/")]
    shown = set()
    for role in ROLES:
        _, token = ApiToken.issue(users[role], "cache test")
        seen = _walk(client, api, HTTP_AUTHORIZATION=f"Bearer {token}")
        assert not _stored(seen), f"{role}: {_stored(seen)}"
        shown |= {url for url, (status, _) in seen.items() if status == 200}
    assert {url.format(**objects) for url in FOUND_CACHED if url.startswith("/api/")} <= shown


def test_every_api_answer_is_never_stored_signed_in_or_not(client, objects):
    api = [url for url in (address(route, objects) for route in routes()) if url.startswith("/api/")]
    seen = _walk(client, api)
    assert not _stored(seen), _stored(seen)


def test_static_files_stay_cacheable_signed_in_or_not(client, users):
    for user in (None, users["uploader"]):
        if user:
            client.force_login(user)
        answer = client.get("/static/portal/portal.css")
        assert answer.status_code == 200
        assert "public" in answer["Cache-Control"] and "no-store" not in answer["Cache-Control"]
        assert int(re.search(r"max-age=(\d+)", answer["Cache-Control"])[1]) > 0


def test_anonymous_pages_are_left_as_their_views_answer(client):
    for url in ("/favicon.ico", "/summary/", "/no-such-page/"):  # 301, 302 to sign in, 404
        assert "Cache-Control" not in client.get(url), url

