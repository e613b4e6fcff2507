"""A column the template lacks is ignored with a warning that names it by its letter only: its
header is never repeated, neither in the warning nor in what the upload stores. (A site pastes
a record extract beside the template, or a patient's row lands in the header row: names, birth
dates and hospital numbers become headers.) A header like a template column's is named as a
likely misspelling of that column, in the template's words."""

import datetime as dt
import json

import pytest
from openpyxl.utils import get_column_letter

from nccid.clinical import reader, services
from nccid.clinical.models import Upload

from .helpers import PEOPLE, positive_row, xlsx_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

TITLE = "Covid-19 Data (Positive) Template v1.5"


def _planted_headers() -> tuple[list, list[str]]:
    """Headers holding identifiers of synthetic people, and the texts that must not be stored."""
    named, born, numbered, dob, with_nhs = PEOPLE[20:25]
    headers = [f"{named.given_name} {named.family_name}",
               dt.datetime.combine(born.birth_date, dt.time()),  # a date cell as a header
               numbered.hospital_number,
               f"DOB {dob.birth_date:%d/%m/%Y}",
               f"{with_nhs.family_name} {with_nhs.nhs_number}"]
    needles = [named.given_name, named.family_name, born.birth_date.isoformat(),
               numbered.hospital_number, dob.birth_date.strftime("%d/%m/%Y"),
               with_nhs.family_name, with_nhs.nhs_number]
    return headers, needles


def test_headers_the_template_lacks_are_named_by_letter_and_never_stored(site, make_user):
    headers, row = positive_row(age=40)
    planted, needles = _planted_headers()
    sheet = xlsx_bytes(list(headers) + planted, [row + ["x"] * len(planted)])
    upload = services.preview_upload(site, "positive", "sheet.xlsx", sheet, make_user("uploader", site=site))
    assert (upload.status, upload.accepted_rows) == ("preview", 1)
    assert upload.sheet_warnings == [
        f"column {get_column_letter(len(headers) + n)} is not part of the {TITLE} and was ignored"
        for n in range(1, len(planted) + 1)]
    stored = json.dumps(list(Upload.objects.values("errors", "sheet_warnings", "staged", "message")))
    assert [n for n in needles if n in stored] == []


def test_a_misspelt_template_header_is_named_in_the_templates_words():
    headers, row = positive_row(age=40)
    sheet = reader.read_bytes(xlsx_bytes(list(headers) + ["Smoking stauts", "Favourite colour"],
                                         [row + ["1", "blue"]]))
    layout = reader.layout(sheet, "positive")
    misspelt, unknown = get_column_letter(len(headers) + 1), get_column_letter(len(headers) + 2)
    assert layout.warnings == [
        f"column {misspelt} is not part of the {TITLE} and was ignored (its header looks like a "
        "misspelling of 'Smoking status': check it)",
        f"column {unknown} is not part of the {TITLE} and was ignored"]


def test_a_template_column_is_named_by_the_templates_header_not_the_sheets(site, make_user):
    # A trailing bracket is ignored when matching a date column's header: this is the Date of
    # admission column. (In a number column a bracket that is no unit is warned, naming the
    # column by its template header without repeating the bracket.)
    person = PEOPLE[26]
    headers, row = positive_row(date_of_admission="forty", age=40)
    admission = list(headers).index("Date of admission")
    headers = list(headers)
    headers[admission] = f"Date of admission ({person.given_name} {person.family_name})"
    user = make_user("uploader", site=site)
    upload = services.preview_upload(site, "positive", "sheet.xlsx", xlsx_bytes(headers, [row]), user)
    assert [(e["row"], e["column"]) for e in upload.errors] == [(2, "Date of admission")]
    age = list(headers).index("Age")
    headers[age] = f"Age ({person.given_name} {person.family_name})"
    warned = services.preview_upload(site, "positive", "sheet.xlsx", xlsx_bytes(headers, [row]), user)
    assert [w for w in warned.sheet_warnings if w.startswith("column D ('Age') has a bracket")]
    stored = json.dumps(list(Upload.objects.values("errors", "sheet_warnings", "staged", "message")))
    assert person.family_name not in stored and person.given_name not in stored
