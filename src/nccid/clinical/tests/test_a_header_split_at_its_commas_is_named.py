"""A CSV header holding commas (a code list) and written without quotes splits into several
columns, none of them the template's: the ignored neighbours whose headers, joined at the comma,
make a template header are named as that header split, with the fix (quote it), and the file is
refused. Its data rows hold one value for that column, so every value after it would be read
under the header to its left (age taken from the heart rate): a split is never just a warning,
and it is named before a required column is said to be missing. A sheet whose only template
column is the NHS/CHI number imports nothing: it is refused, not offered for confirmation as
"unchanged"; a hospital-number column beside it links images, so that sheet is read."""

import pytest

from nccid.clinical import reader, services

from .helpers import PEOPLE, csv_bytes, positive_row, run

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

TITLE = "Covid-19 Data (Positive) Template v1.5"
ITU = "ITU admission (No = 0, Yes = 1)"
SEX = "Sex (Male = 1, Female = 0)"
SWAB_STATUS = "Swab status (Negative = 0, Positive = 1)"
OUTCOME = ("Outcome (Discharged alive = 1, Death = 2, Transfer = 3, Still in hospital = 4, "
           "Palliative discharge = 5)")
FIX = "in a CSV file a header holding a comma must be in double quotes; quote it, or upload the filled template as .xlsx"


def _unquoted_csv(header_line: str, *rows: str) -> bytes:
    """Written by hand, as a site's script would: ``csv.writer`` would quote the header."""
    return "\r\n".join([header_line, *rows, ""]).encode()


def _refusal(data: bytes, kind: str = "positive") -> str:
    with pytest.raises(reader.SpreadsheetRejected) as caught:
        reader.layout(reader.read_bytes(data), kind)
    return str(caught.value)


def test_the_reviewers_file_is_refused_naming_the_split_header(site, make_user):
    data = _unquoted_csv(f"NHS/CHI Number,{ITU}", f"{PEOPLE[0].nhs_number},1")
    message = _refusal(data)
    assert message == f"columns B and C look like the template's header '{ITU}' split at its comma: {FIX}"
    upload = services.preview_upload(site, "positive", "followup.csv", data,
                                     make_user("uploader", site=site))
    assert upload.status == "rejected" and upload.message == message


def test_a_split_header_in_the_middle_is_refused_and_no_value_is_read_under_the_wrong_header(site, make_user):
    data = _unquoted_csv(f"NHS/CHI Number,{SEX},Age,Heart rate on admission (/min),Systolic BP (mmHg),"
                         "Diastolic BP (mmHg)",
                         *(f"{person.nhs_number},1,70,110,120,80" for person in PEOPLE[:2]))
    assert _refusal(data) == f"columns B and C look like the template's header '{SEX}' split at its comma: {FIX}"
    upload = services.preview_upload(site, "positive", "vitals.csv", data, make_user("uploader", site=site))
    assert (upload.status, upload.staged, upload.new_records) == ("rejected", None, 0)


def test_a_split_header_beside_recognised_columns_is_refused_naming_it():
    headers, row = positive_row(age=40)
    kept = [i for i, header in enumerate(headers) if header != ITU]
    headers, row = [headers[i] for i in kept], [row[i] for i in kept]
    quoted = csv_bytes(headers, [row]).decode().split("\r\n")
    # The other headers quoted as the template's CSV writer quotes them; ITU's not, at the end.
    data = _unquoted_csv(f"{quoted[0]},{ITU}", f"{quoted[1]},1")
    first = reader._column_letter(len(headers))
    second = reader._column_letter(len(headers) + 1)
    assert _refusal(data) == (f"columns {first} and {second} look like the template's header "
                              f"'{ITU}' split at its comma: {FIX}")


def test_a_header_split_at_every_comma_of_its_code_list_is_one_hint():
    data = _unquoted_csv(f"NHS/CHI Number,Age,{OUTCOME.replace(', ', ',')}",
                         f"{PEOPLE[0].nhs_number},40,1")
    message = _refusal(data, "isaric")
    assert message.startswith("columns C to G look like ") and message.count("look like") == 1
    assert f"header '{OUTCOME}' split at its commas" in message


def test_a_split_required_header_is_named_not_called_missing():
    data = _unquoted_csv(f"NHS/CHI Number,Swab date,{SWAB_STATUS}",
                         f"{PEOPLE[0].nhs_number},01/04/2020,1")
    assert _refusal(data, "negative") == (
        f"columns C and D look like the template's header '{SWAB_STATUS}' split at its comma: {FIX}")


def test_only_the_nhs_number_and_unknown_columns_is_refused_by_letter():
    data = _unquoted_csv("NHS/CHI Number,Favourite colour,Shoe size",
                         f"{PEOPLE[0].nhs_number},blue,9")
    assert _refusal(data) == (
        f"no data column of the {TITLE} was recognised: only its 'NHS/CHI Number' column was "
        "read, and columns B and C were ignored: use the template's headers in row 1")


def test_hospital_numbers_and_a_local_column_are_read_as_without_the_local_column():
    rows = [f"{person.nhs_number},{person.hospital_number}" for person in PEOPLE[:2]]
    alone = run(_unquoted_csv("NHS/CHI Number,Hospital (Internal) Number", *rows))
    with_notes = run(_unquoted_csv("NHS/CHI Number,Hospital (Internal) Number,MRN source",
                                   *(f"{row},PAS" for row in rows)))
    assert [r.hospital_hash for r in with_notes.records] == [r.hospital_hash for r in alone.records]
    assert len(with_notes.records) == 2 and not with_notes.rejected_rows
