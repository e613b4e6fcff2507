"""Only the first sheet is read. A workbook holding an identifier column (NHS/CHI Number,
Hospital (Internal) Number) on another sheet (a second batch of patients, or the copy that was
active when the file was saved) is refused, naming the sheet by position: its patients would
otherwise be left out without a word. Other template headers there (a drop-down list, a
summary) hold no patient and do not refuse the file."""

import io

import pytest

from nccid.clinical import reader
from nccid.clinical.reader import SpreadsheetRejected
from nccid.clinical.schema import get_template
from nccid.clinical.xlsx_template import build_workbook

from .helpers import PEOPLE, positive_row, run, xlsx_bytes

HEADERS = get_template("positive").headers
REFUSAL = ("sheet 2 (in order) also holds template columns in its first row: only the first sheet "
           "is read, so put every row on the first sheet and delete the others (or their headers), "
           "then upload again")


def _with_second_sheet(active: bool = False, blank_rows: int = 0) -> bytes:
    name = f"More {PEOPLE[3].family_name}"  # a sheet's name may be anything: never repeated

    def second(workbook):
        sheet = workbook.create_sheet(name)
        for _ in range(blank_rows):
            sheet.append([None])
        sheet.append(HEADERS)
        sheet.append(positive_row(PEOPLE[1], age=60)[1])
        if active:
            workbook.active = 1

    headers, row = positive_row(PEOPLE[0], age=50)
    return xlsx_bytes(headers, [row], build=second)


@pytest.mark.parametrize("active", [False, True], ids=["first-active", "second-active"])
def test_patients_on_a_second_sheet_refuse_the_file(active):
    with pytest.raises(SpreadsheetRejected) as refused:
        reader.read_bytes(_with_second_sheet(active=active))
    assert str(refused.value) == REFUSAL and PEOPLE[3].family_name not in str(refused.value)


def test_headers_below_blank_rows_of_another_sheet_are_found():
    with pytest.raises(SpreadsheetRejected, match="sheet 2 "):
        reader.read_bytes(_with_second_sheet(blank_rows=3))


def test_a_sheet_of_notes_or_lookups_is_not_a_second_batch():
    def notes(workbook):
        workbook.create_sheet("Notes").append(["Hospital", "Checked by the data manager"])

    headers, row = positive_row(PEOPLE[0], age=50)
    assert len(run(xlsx_bytes(headers, [row], build=notes)).records) == 1


def test_the_downloaded_templates_about_sheet_is_not_a_second_batch():
    workbook = build_workbook("positive")
    workbook.active.append(positive_row(PEOPLE[0], age=50)[1])
    buffer = io.BytesIO()
    workbook.save(buffer)
    assert len(workbook.sheetnames) == 2 and workbook.sheetnames[1] == "About"
    assert len(run(buffer.getvalue()).records) == 1


@pytest.mark.parametrize("first_row", [["Sex", "Smoking status", "Ethnicity"],
                                       ["Hospital", "Death", "Count"]], ids=["lists", "summary"])
def test_a_sheet_of_drop_down_lists_or_a_summary_is_not_a_second_batch(first_row):
    def lists(workbook):
        sheet = workbook.create_sheet("Lists")
        sheet.append(first_row)
        sheet.append(["0", "1", "A"])

    headers, row = positive_row(PEOPLE[0], age=50)
    assert len(run(xlsx_bytes(headers, [row], build=lists)).records) == 1


@pytest.mark.parametrize("identifier", ["NHS/CHI Number", "Hospital (Internal) Number"])
def test_an_identifier_column_on_another_sheet_refuses_the_file(identifier):
    def second(workbook):
        workbook.create_sheet("More").append([identifier, "Age"])

    headers, row = positive_row(PEOPLE[0], age=50)
    with pytest.raises(SpreadsheetRejected) as refused:
        reader.read_bytes(xlsx_bytes(headers, [row], build=second))
    assert str(refused.value) == REFUSAL
