"""The whole matrix: every role × every page of the project and every API operation.

Pages and API operations are enumerated from the URL map and the OpenAPI schema, so a page or
endpoint added without an entry here fails the test. Expectations:
- allowed: the page renders (200) or the action proceeds (redirect / 2xx);
- denied: 403 or 404, with nothing of the object in the body;
- signed out: the login page (pages) or 401 (API);
- an uploader of site A asking for an object of site B: 404, and nothing changes.
"""

from __future__ import annotations

import io
import itertools
import json
from dataclasses import dataclass

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from nccid.accounts.models import ApiToken
from nccid.clinical import services as clinical
from nccid.clinical.models import Upload
from nccid.imaging.intake import ingest
from nccid.imaging.models import HeldImage
from nccid.portal.api import api
from nccid.synthetic.clinical import write_sheet
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

ROLES = ("anonymous", "uploader", "data-manager", "researcher", "admin")
SIGNED_IN = {"uploader", "data-manager", "researcher", "admin"}
SITE_DATA = {"uploader", "data-manager", "admin"}  # may see site uploads (own site or all)
UPLOADERS = {"uploader", "admin"}                  # may upload and confirm (own site or any)
MANAGERS = {"data-manager", "admin"}
# What re-identifies (the vault, a patient or study found by what a site knows, held images that
# may show a name beside their pseudonym): admins may query research data, so not theirs too.
REIDENTIFYING = {"data-manager"}
RESEARCHERS = {"researcher", "admin"}


@dataclass(frozen=True)
class Rule:
    method: str
    allowed: set[str]
    site_scoped: bool = False  # the URL names an object of a site: test other sites' objects too
    json: dict | None = None   # a JSON body to send
    # Another part's operation: "allowed" means not refused (its own tests check its answers).
    not_refused: bool = False


PAGES: dict[str, Rule] = {
    "portal:home": Rule("GET", SIGNED_IN),
    "portal:password_change": Rule("GET", SIGNED_IN),
    "portal:guidance": Rule("GET", SIGNED_IN),
    "portal:faq": Rule("GET", SIGNED_IN),
    "portal:research": Rule("GET", RESEARCHERS),
    "portal:template_download": Rule("GET", SIGNED_IN),
    "portal:upload_positive": Rule("GET", UPLOADERS),
    "portal:upload_negative": Rule("GET", UPLOADERS),
    "portal:upload_isaric": Rule("GET", UPLOADERS),
    "portal:my_uploads": Rule("GET", SITE_DATA),
    "portal:upload_preview": Rule("GET", SITE_DATA, site_scoped=True),
    "portal:upload_errors_csv": Rule("GET", SITE_DATA, site_scoped=True),
    "portal:upload_confirm": Rule("POST", UPLOADERS, site_scoped=True),
    "portal:upload_cancel": Rule("POST", UPLOADERS, site_scoped=True),
    "figures:summary": Rule("GET", SIGNED_IN),
    "figures:dashboard": Rule("GET", MANAGERS),
    "figures:chart": Rule("GET", MANAGERS),
    "figures:review": Rule("GET", REIDENTIFYING),
    "figures:review_decide": Rule("POST", REIDENTIFYING, site_scoped=True),
    "figures:review_image": Rule("GET", REIDENTIFYING, site_scoped=True),
    "figures:vault": Rule("GET", REIDENTIFYING),
    "figures:withdraw": Rule("GET", REIDENTIFYING),
    "figures:audit": Rule("GET", MANAGERS),
    "figures:remove_study": Rule("GET", REIDENTIFYING),
}
# Pages with their own tests: the login page (for everyone), logout (POST, any session), how
# long a session has left (anyone, of their own session: 0 signed out;
# test_asking_how_long_a_session_has_left_changes_nothing.py) and the health check (for
# everyone: load balancers; web/tests/test_health.py).
NOT_IN_MATRIX = {"portal:login", "portal:logout", "portal:session_left", "healthz"}

API: dict[tuple[str, str], Rule] = {
    ("GET", "/api/me"): Rule("GET", SIGNED_IN),
    ("GET", "/api/summary"): Rule("GET", SIGNED_IN),
    ("GET", "/api/templates/{kind}"): Rule("GET", SIGNED_IN),
    ("POST", "/api/uploads"): Rule("POST", UPLOADERS),
    ("GET", "/api/uploads"): Rule("GET", SITE_DATA),
    ("GET", "/api/uploads/{upload_id}"): Rule("GET", SITE_DATA, site_scoped=True),
    ("POST", "/api/uploads/{upload_id}/confirm"): Rule("POST", UPLOADERS, site_scoped=True),
    ("POST", "/api/uploads/{upload_id}/cancel"): Rule("POST", UPLOADERS, site_scoped=True),
    ("GET", "/api/studies"): Rule("GET", SITE_DATA),
    ("GET", "/api/review/held"): Rule("GET", REIDENTIFYING),
    ("GET", "/api/review/held/{held_id}/image.png"): Rule("GET", REIDENTIFYING, site_scoped=True),
    ("POST", "/api/review/held/{held_id}/release"): Rule("POST", REIDENTIFYING, site_scoped=True),
    ("POST", "/api/review/held/{held_id}/reject"): Rule("POST", REIDENTIFYING, site_scoped=True),
    ("POST", "/api/research/cohort/count"): Rule("POST", RESEARCHERS, json={}, not_refused=True),
    ("POST", "/api/research/cohort/list"): Rule("POST", RESEARCHERS, json={}, not_refused=True),
    ("POST", "/api/research/export"): Rule("POST", RESEARCHERS, json={}, not_refused=True),
    ("GET", "/api/research/withdrawn"): Rule("GET", RESEARCHERS, not_refused=True),
}


def project_pages() -> dict[str, URLPattern]:
    """Every named page of the project, by 'namespace:name' (the admin and the API apart)."""
    found: dict[str, URLPattern] = {}

    def walk(patterns, namespace: str | None) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                if entry.namespace in ("admin", "api"):
                    continue
                walk(entry.url_patterns, entry.namespace or namespace)
            elif entry.name:
                found[f"{namespace}:{entry.name}" if namespace else entry.name] = entry

    walk(get_resolver().url_patterns, None)
    return found


def api_operations() -> set[tuple[str, str]]:
    schema = api.get_openapi_schema()
    return {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}


def test_every_page_and_operation_has_a_rule():
    assert set(project_pages()) - NOT_IN_MATRIX == set(PAGES), "add the new page to PAGES"
    assert api_operations() == set(API), "add the new API operation to API"


# ---------------------------------------------------------------- fixtures: two sites' data

def _sheet(folder, seed: int) -> bytes:
    path = folder / f"matrix-{seed}.xlsx"
    if not path.exists():
        write_sheet("positive", people(2, seed=seed), path, errors=1, seed=seed)
    return path.read_bytes()


_instances = itertools.count(1)


def _held(site, seed: int) -> HeldImage:
    person = people(1, seed=seed)[0]
    ds = synthetic_instance(person, patient_id=person.nhs_number, instance=next(_instances))
    ds.BurnedInAnnotation = "YES"
    outcome = ingest(to_bytes(ds), site, "test")
    return HeldImage.objects.get(sop_uid=outcome.sop_uid)


@pytest.fixture
def world(site, other_site, make_user, keyring, tmp_path):
    """Users of each role (the uploader at site A) and a set of objects at site A and site B."""
    users = _Users(make_user, site)

    def objects(owner_site, seed):
        sheet = _sheet(tmp_path, seed)
        upload = clinical.preview_upload(owner_site, "positive", "sheet.xlsx", sheet, None)
        return {"upload": upload, "held": _held(owner_site, seed), "sheet": sheet}

    return {"users": users, "A": site, "B": other_site,
            "make": {"A": lambda n: objects(site, n), "B": lambda n: objects(other_site, n)}}


class _Users(dict):
    """One account per role, made when first asked for (password hashing is slow)."""

    def __init__(self, make_user, site) -> None:
        super().__init__()
        self.make_user, self.site = make_user, site

    def __missing__(self, role: str):
        # The researcher too is attached to the site (the CLI allows it): that must not open
        # the site's uploads to them.
        attached = role in ("uploader", "researcher")
        self[role] = self.make_user(role, site=self.site if attached else None)
        return self[role]


def _page_url(name: str, objects: dict) -> str:
    pattern = project_pages()[name].pattern
    converters = getattr(pattern, "converters", {})
    kwargs = {}
    for param in converters:
        if param == "pk":
            key = "held" if name.startswith("figures:review") else "upload"
            kwargs["pk"] = objects[key].pk
        elif param == "kind":
            kwargs["kind"] = "positive"
        elif param == "name":
            kwargs["name"] = "age"
        elif param == "action":
            kwargs["action"] = "reject"
        else:
            raise AssertionError(f"{name}: no test value for URL parameter {param!r}")
    return reverse(name, kwargs=kwargs)


def _api_url(path: str, objects: dict) -> str:
    return (path.replace("{kind}", "positive")
            .replace("{upload_id}", str(objects["upload"].pk))
            .replace("{held_id}", str(objects["held"].pk)))


def _state(objects: dict) -> tuple:
    return (Upload.objects.get(pk=objects["upload"].pk).status,
            HeldImage.objects.get(pk=objects["held"].pk).status)


# ---------------------------------------------------------------- the matrix

class _Pool:
    """Each site's objects, made afresh only after an action may have changed them."""

    def __init__(self, world: dict) -> None:
        self.world, self.current, self.seed = world, {}, 0

    def get(self, where: str) -> dict:
        if where not in self.current:
            self.seed = self.seed % 9 + 1
            self.current[where] = self.world["make"][where](self.seed)
        return self.current[where]

    def used(self, where: str, rule: Rule) -> None:
        if rule.method == "POST":
            self.current.pop(where, None)


def _check_page(client, role: str, name: str, rule: Rule, objects: dict, own: bool) -> str | None:
    url = _page_url(name, objects)
    before = _state(objects)
    response = client.post(url) if rule.method == "POST" else client.get(url)
    allowed = role in rule.allowed and (own or role != "uploader" or not rule.site_scoped)
    code = response.status_code
    if role == "anonymous":
        ok = code == 302 and reverse("portal:login") in response["Location"]
    elif allowed:
        ok = code == 200 if rule.method == "GET" else code in (200, 302)
    else:
        ok = code in (403, 404) and _state(objects) == before
    return None if ok else f"{role} {rule.method} {url} ({'own' if own else 'other'} site) -> {code}"


def _check_api(client, role: str, key, rule: Rule, objects: dict, own: bool, token: str | None,
               site_code: str) -> str | None:
    method, path = key
    url = _api_url(path, objects)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    before = _state(objects)
    if key == ("POST", "/api/uploads"):
        sheet = io.BytesIO(objects["sheet"])
        sheet.name = "sheet.xlsx"
        data = {"kind": "positive", "file": sheet}
        if role == "admin":
            data["site"] = site_code
        response = client.post(url, data, **headers)
    elif rule.json is not None:
        response = client.post(url, json.dumps(rule.json), content_type="application/json",
                               **headers)
    else:
        response = client.post(url, **headers) if method == "POST" else client.get(url, **headers)
    code = response.status_code
    allowed = role in rule.allowed and (own or role != "uploader" or not rule.site_scoped)
    # Acting on an upload (confirm/cancel) is the uploading site's business, and an admin's.
    if path.startswith("/api/uploads/{upload_id}/") and role == "data-manager":
        allowed = False
    if role == "anonymous":
        ok = code == 401
    elif allowed and rule.not_refused:
        ok = code not in (401, 403, 404) and code < 500
    elif allowed:
        ok = 200 <= code < 300
    else:
        ok = code in (403, 404) and _state(objects) == before
        ok = ok and str(objects["upload"].pk) not in response.content.decode().replace(url, "")
    return None if ok else f"{role} {method} {url} ({'own' if own else 'other'} site) -> {code}"


@pytest.mark.parametrize("role", ROLES)
def test_role_matrix_for_pages(client, world, role):
    if role != "anonymous":
        client.force_login(world["users"][role])
    failures = []
    pool = _Pool(world)
    for name, rule in PAGES.items():
        for where in ("A", "B") if rule.site_scoped else ("A",):
            objects = pool.get(where)
            failures.append(_check_page(client, role, name, rule, objects, own=where == "A"))
            pool.used(where, rule)
    assert [f for f in failures if f] == []


@pytest.mark.parametrize("role", ROLES)
def test_role_matrix_for_the_api(client, world, role):
    token = None
    if role != "anonymous":
        _, token = ApiToken.issue(world["users"][role], "matrix")
    failures = []
    pool = _Pool(world)
    for key, rule in API.items():
        for where in ("A", "B") if rule.site_scoped else ("A",):
            objects = pool.get(where)
            failures.append(_check_api(client, role, key, rule, objects, where == "A", token,
                                       world["A"].code))
            pool.used(where, rule)
    assert [f for f in failures if f] == []


def test_site_a_lists_never_show_site_b(client, world):
    a_objects, b_objects = world["make"]["A"](1), world["make"]["B"](2)
    uploader = world["users"]["uploader"]
    _, token = ApiToken.issue(uploader, "t")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    listed = client.get("/api/uploads", **auth).json()
    assert {u["site"] for u in listed} == {world["A"].code}
    assert b_objects["upload"].pk not in {u["id"] for u in listed}
    assert client.get(f"/api/uploads?site={world['B'].code}", **auth).status_code == 403
    studies = client.get("/api/studies", **auth).json()
    assert studies and {s["site"] for s in studies} == {world["A"].code}
    client.force_login(uploader)
    page = client.get(reverse("portal:my_uploads") + f"?site={world['B'].code}").content.decode()
    assert f"/uploads/{b_objects['upload'].pk}/" not in page
    assert f"/uploads/{a_objects['upload'].pk}/" in page


@pytest.mark.parametrize("role,admin_ok", [("uploader", False), ("researcher", False),
                                            ("data-manager", True), ("admin", True)])
def test_site_and_account_management_in_the_django_admin(client, world, role, admin_ok):
    client.force_login(world["users"][role])
    for name in ("admin:index", "admin:accounts_site_changelist", "admin:accounts_user_changelist",
                 "admin:accounts_site_add"):
        response = client.get(reverse(name))
        if admin_ok:
            assert response.status_code == 200, (role, name)
        else:
            assert response.status_code == 302 and "/admin/login/" in response["Location"]
