"""A CSV header holding commas (a code list) and written without quotes splits into several
columns, none of them the template's: the ignored neighbours whose headers, joined at the comma,
make a template header are named as that header split, with the fix (quote it). A sheet in
which every column but the identifiers is ignored imports nothing: it is refused, not offered
for confirmation as "unchanged"."""

import pytest

from nccid.clinical import reader, services

from .helpers import PEOPLE, csv_bytes, positive_row

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

TITLE = "Covid-19 Data (Positive) Template v1.5"
ITU = "ITU admission (No = 0, Yes = 1)"
OUTCOME = ("Outcome (Discharged alive = 1, Death = 2, Transfer = 3, Still in hospital = 4, "
           "Palliative discharge = 5)")


def _unquoted_csv(header_line: str, *rows: str) -> bytes:
    """Written by hand, as a site's script would: ``csv.writer`` would quote the header."""
    return "\r\n".join([header_line, *rows, ""]).encode()


def test_the_reviewers_file_is_refused_naming_the_split_header(site, make_user):
    data = _unquoted_csv(f"NHS/CHI Number,{ITU}", f"{PEOPLE[0].nhs_number},1")
    with pytest.raises(reader.SpreadsheetRejected) as caught:
        reader.layout(reader.read_bytes(data), "positive")
    message = str(caught.value)
    assert message.startswith(f"no data column of the {TITLE} was recognised: only its "
                              "identifier columns were read")
    assert (f"columns B and C look like the template's header '{ITU}' split at its comma: in a "
            "CSV file a header holding a comma must be in double quotes") in message
    upload = services.preview_upload(site, "positive", "followup.csv", data,
                                     make_user("uploader", site=site))
    assert upload.status == "rejected" and upload.message == message


def test_a_split_header_beside_recognised_columns_is_a_warning_naming_it(site):
    headers, row = positive_row(age=40)
    kept = [i for i, header in enumerate(headers) if header != ITU]
    headers, row = [headers[i] for i in kept], [row[i] for i in kept]
    quoted = csv_bytes(headers, [row]).decode().split("\r\n")
    # The other headers quoted as the template's CSV writer quotes them; ITU's not, at the end.
    data = _unquoted_csv(f"{quoted[0]},{ITU}", f"{quoted[1]},1")
    layout = reader.layout(reader.read_bytes(data), "positive")
    first = reader._column_letter(len(headers))
    second = reader._column_letter(len(headers) + 1)
    assert layout.warnings == [
        f"columns {first} and {second} are not part of the {TITLE} and were ignored: they look "
        f"like the template's header '{ITU}' split at its comma: in a CSV file a header holding "
        "a comma must be in double quotes; quote it, or upload the filled template as .xlsx"]


def test_a_header_split_at_every_comma_of_its_code_list_is_one_hint():
    data = _unquoted_csv(f"NHS/CHI Number,Age,{OUTCOME.replace(', ', ',')}",
                         f"{PEOPLE[0].nhs_number},40,1")
    layout = reader.layout(reader.read_bytes(data), "isaric")
    assert len(layout.warnings) == 1
    assert layout.warnings[0].startswith("columns C to G are not part of the ")
    assert f"header '{OUTCOME}' split at its commas" in layout.warnings[0]


def test_only_identifiers_and_unknown_columns_is_refused_by_letter():
    data = _unquoted_csv("NHS/CHI Number,Favourite colour,Shoe size",
                         f"{PEOPLE[0].nhs_number},blue,9")
    with pytest.raises(reader.SpreadsheetRejected) as caught:
        reader.layout(reader.read_bytes(data), "positive")
    assert str(caught.value) == (
        f"no data column of the {TITLE} was recognised: only its identifier columns were read, "
        "and columns B and C were ignored: use the template's headers in row 1")
