"""An Excel error cell (#N/A, #DIV/0! ...: a formula that failed) is not read as blank: each is
a cell error naming its row and column, in number, text, coded and identifier columns alike,
and nothing of the cell is stored. A CSV holds such errors as text: the same."""

import io
import json
import zipfile

import pytest

from nccid.clinical import services
from nccid.clinical.schema import get_template

from .helpers import PEOPLE, csv_bytes, run, sheet_of

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

ADVICE = "(a formula that failed): type the value, or leave the cell empty if it is not known"


def _reason(code: str) -> str:
    return f"the cell holds the Excel error {code} {ADVICE}"


def _errors_by_row(upload) -> dict[int, list[tuple[str, str, str]]]:
    found: dict[int, list] = {}
    for error in upload.errors:
        found.setdefault(error["row"], []).append((error["column"], error["value"], error["reason"]))
    return found


def test_error_cells_in_number_text_and_nhs_number_columns_are_cell_errors(site, make_user):
    rows = [
        {"nhs_number": "#N/A", "age": 50},
        {"age": "#N/A", "hospital": "Royal Test Infirmary"},
        {"age": 50, "hospital": "#N/A"},
        {"age": 60, "crp": "#DIV/0!", "ethnicity": "#VALUE!", "hospital_number": "#REF!"},
        {"age": 70, "hospital": "Royal Test Infirmary"},
    ]
    upload = services.preview_upload(site, "positive", "sheet.xlsx", sheet_of("positive", rows),
                                     make_user("uploader", site=site))
    headers = {c.field: c.header for c in get_template("positive").template_columns()}
    assert _errors_by_row(upload) == {
        2: [(headers["nhs_number"], "", _reason("#N/A"))],
        3: [(headers["age"], "", _reason("#N/A"))],
        4: [(headers["hospital"], "", _reason("#N/A"))],
        5: [(headers["hospital_number"], "", _reason("#REF!")),
            (headers["ethnicity"], "", _reason("#VALUE!")),
            (headers["crp"], "", _reason("#DIV/0!"))],
    }
    assert (upload.status, upload.accepted_rows, upload.rejected_rows) == ("preview", 1, 4)
    assert "Row 3, Age: the cell holds the Excel error #N/A" in upload.errors[1]["message"]
    assert "#" not in json.dumps(upload.staged)


def test_error_text_in_a_csv_is_a_cell_error_not_a_value(site, make_user):
    template = get_template("positive")
    fields = [c.field for c in template.template_columns()]
    rows = []
    for person, values in zip(PEOPLE, [{"hospital": "#N/A"}, {"ethnicity": "#N/A"},
                                       {"age": " #NUM! "}, {"age": 40}], strict=False):
        values = {"nhs_number": person.nhs_number, **values}
        rows.append(["" if values.get(f) is None else values[f] for f in fields])
    upload = services.preview_upload(site, "positive", "sheet.csv", csv_bytes(template.headers, rows),
                                     make_user("uploader", site=site))
    assert {e["row"]: e["reason"] for e in upload.errors} == {
        2: _reason("#N/A"), 3: _reason("#N/A"), 4: _reason("#NUM!")}
    assert upload.accepted_rows == 1 and "#" not in json.dumps(upload.staged)


def _with_sheet_xml_replaced(data: bytes, old: bytes, new: bytes) -> bytes:
    source, target = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(target, "w") as archive:
        for name in source.namelist():
            part = source.read(name)
            archive.writestr(name, part.replace(old, new) if name.startswith("xl/worksheets/") else part)
    return target.getvalue()


def test_an_error_cell_without_its_code_is_still_an_error():
    data = _with_sheet_xml_replaced(sheet_of("positive", [{"age": "#N/A"}]), b"<v>#N/A</v></c>", b"</c>")
    [problem] = run(data).problems
    assert (problem.label, problem.value) == ("Age", "")
    assert problem.reason == f"the cell holds an Excel error {ADVICE}"


def test_a_row_whose_only_content_is_an_error_cell_under_no_header_is_skipped():
    from nccid.clinical import reader

    from .helpers import positive_row, xlsx_bytes

    headers, row = positive_row()
    headers = [*headers[:3], "", *headers[3:]]
    filled = [*row[:3], "", *row[3:]]
    stray = [""] * len(headers)
    stray[3] = "#N/A"  # under the blank header, alone on its row
    sheet = reader.read_bytes(xlsx_bytes(headers, [filled, stray]))
    assert [number for number, _ in sheet.rows] == [2]
    assert sheet.cell_errors == {} and sheet.unheaded_columns == [3]
    result = run(xlsx_bytes(headers, [filled, stray]))
    assert (result.total_rows, result.errors, result.rejected_rows) == (1, [], set())
