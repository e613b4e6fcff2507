"""The search for hospital numbers in text (an upload's, by pattern, and those the site links,
as keyed hashes) ran on every cell of every row: a Hospital column holding one text with
digits on every row made validation 30-60 % slower. Each distinct text is now searched and
hashed once, and nothing is hashed for a site that links no hospital number yet."""

import pytest

from nccid.clinical import hospital_numbers, reader, services, validation
from nccid.clinical.schema import get_template
from nccid.identity.keys import Keyring

from .helpers import PEOPLE, template_row, xlsx_bytes

TEMPLATE = get_template("positive")
WARD = "Royal Synthetic Infirmary, Ward 12"


class CountingKeyring(Keyring):
    def __init__(self, master: bytes):
        super().__init__(master)
        object.__setattr__(self, "texts", [])

    def hospital_hash(self, site_code: str, hospital_number: str) -> str:
        self.texts.append(hospital_number)
        return super().hospital_hash(site_code, hospital_number)


def _sheet(rows: int = 30) -> bytes:
    return xlsx_bytes(TEMPLATE.headers, [template_row(TEMPLATE, person, {"hospital": WARD, "age": 50})
                                         for person in PEOPLE[:rows]])


def test_a_text_repeated_on_every_row_is_hashed_once_per_candidate():
    keyring = CountingKeyring(b"t" * 32)
    sheet = reader.read_bytes(_sheet())
    result = validation.validate(sheet, reader.layout(sheet, "positive"), validation.SiteRules("RTEST"),
                                 keyring, known_hospital_hashes=lambda hashes: set())
    assert len(result.records) == 30
    parts = hospital_numbers.candidates(WARD, 20)
    assert parts and sorted(keyring.texts) == sorted([p.hospital_number for p in PEOPLE[:30]] + list(parts))


def test_an_uploads_numbers_search_each_distinct_text_once(monkeypatch):
    searched = []
    search = hospital_numbers.UploadNumbers._search
    monkeypatch.setattr(hospital_numbers.UploadNumbers, "_search",
                        lambda self, text: searched.append(text) or search(self, text))
    sheet = reader.read_bytes(_sheet())
    validation.validate(sheet, reader.layout(sheet, "positive"), validation.SiteRules("RTEST"),
                        Keyring(b"t" * 32))
    assert searched.count(WARD) == 1


@pytest.mark.django_db(databases=["default", "vault"])
def test_a_site_without_links_hashes_no_text(site, make_user, monkeypatch):
    asked = []
    validate = services.validate
    monkeypatch.setattr(services, "validate", lambda *a, **kw: asked.append(kw) or validate(*a, **kw))
    user = make_user("uploader", site=site)
    first = services.preview_upload(site, "positive", "a.xlsx", _sheet(3), user)
    assert asked[-1]["known_hospital_hashes"] is None
    services.confirm_upload(first, user)
    services.preview_upload(site, "positive", "b.xlsx", _sheet(3), user)
    assert asked[-1]["known_hospital_hashes"] is not None  # links now: compared
