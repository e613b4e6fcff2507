"""Whole-file refusals: each with a clear message, and the size limit checked before parsing."""

import io
import zipfile
from pathlib import Path

import pytest

from nccid.clinical import reader
from nccid.clinical.reader import SpreadsheetRejected
from nccid.clinical.schema import get_template

from .helpers import PEOPLE, csv_bytes, positive_row, run, xlsx_bytes


def refused(data: bytes, kind: str = "positive") -> str:
    with pytest.raises(SpreadsheetRejected) as caught:
        sheet = reader.read_bytes(data)
        reader.layout(sheet, kind)
    return str(caught.value)


def good_sheet(**kwargs) -> bytes:
    headers, row = positive_row(age=40)
    return xlsx_bytes(headers, [row], **kwargs)


def test_not_a_spreadsheet():
    assert "not a spreadsheet" in refused(b"%PDF-1.7\n\x00\x01binary" * 10)
    assert "not a spreadsheet" in refused(_zip({"hello.txt": b"hi"}))


def test_old_excel_format():
    assert ".xls" in refused(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100)


def test_empty_file_and_sheet_without_rows():
    assert refused(b"") == "the file is empty"
    assert "no header row" in refused(xlsx_bytes([], []))
    assert "headers but no rows" in refused(xlsx_bytes(get_template("positive").headers, []))


def test_a_200_mb_file_is_refused_from_its_size_alone(tmp_path):
    big = tmp_path / "big.xlsx"
    with open(big, "wb") as handle:
        handle.truncate(200 * 1024 * 1024)  # sparse: nothing to parse, only the size is known
    with pytest.raises(SpreadsheetRejected, match="the file is 200 MB; the limit is 50 MB"):
        reader.read_path(big)


def test_formulas_are_refused():
    def add_formula(workbook):
        workbook.active["D2"] = "=40+1"

    assert "contains formulas" in refused(good_sheet(build=add_formula))


def test_csv_formula_is_refused_with_its_place():
    headers, row = positive_row(age="=1+1")
    message = refused(csv_bytes(headers, [["" if v is None else v for v in row]]))
    assert message == "row 2, column 4 holds a formula: upload values only"


def test_merged_cells_are_refused():
    def merge(workbook):
        workbook.active.merge_cells("D2:E2")

    assert "merged cells (D2:E2)" in refused(good_sheet(build=merge))


def test_hidden_sheets_are_refused_and_named_by_position_not_name():
    name = f"Lookups {PEOPLE[2].nhs_number}"  # a sheet's name may be anything

    def hide(workbook):
        workbook.create_sheet(name).sheet_state = "hidden"

    message = refused(good_sheet(build=hide))
    assert "hidden sheets (sheet 2 in order)" in message and PEOPLE[2].nhs_number not in message


def test_values_in_hidden_columns_or_rows_are_refused_and_named():
    def hide_age(workbook):
        workbook.active.column_dimensions["D"].hidden = True

    assert "hidden columns holding values (D)" in refused(good_sheet(build=hide_age))

    headers, row = positive_row(age=40)
    _, other = positive_row(age=41)

    def hide_second_patient(workbook):
        workbook.active.row_dimensions[3].hidden = True

    message = refused(xlsx_bytes(headers, [row, other], build=hide_second_patient))
    assert message.startswith("sheet 1 ") and "hidden rows holding values (3)" in message


def test_excel_error_cells_in_hidden_columns_or_rows_are_refused():
    """An error cell (#N/A) is no blank: the check would report a cell the site cannot see."""
    def error_in_hidden_age(workbook):
        workbook.active["D2"] = "#N/A"  # openpyxl writes it as Excel does, an error cell
        workbook.active.column_dimensions["D"].hidden = True

    headers, row = positive_row()
    data = xlsx_bytes(headers, [row], build=error_in_hidden_age)
    assert b't="e"' in _sheet_xml(data)
    assert "hidden columns holding values (D)" in refused(data)

    def error_in_hidden_row(workbook):
        workbook.active["D3"] = "#N/A"
        workbook.active.row_dimensions[3].hidden = True

    assert "hidden rows holding values (3)" in refused(xlsx_bytes(headers, [row], build=error_in_hidden_row))


def test_hidden_empty_columns_and_rows_are_accepted():
    """Excel users hide the unused part of a sheet; nothing is hidden there."""
    def tidy(workbook):
        workbook.active.column_dimensions.group("DA", "DD", hidden=True)
        workbook.active.row_dimensions[40].hidden = True

    sheet = reader.read_bytes(good_sheet(build=tidy))
    reader.layout(sheet, "positive")
    assert b'hidden="1"' in _sheet_xml(good_sheet(build=tidy))  # the sheet did hide them


def _sheet_xml(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read("xl/worksheets/sheet1.xml")


def test_wrong_template_is_named():
    negative = get_template("negative")
    data = xlsx_bytes(negative.headers, [["9990000018", "", "", "2020-04-01", 0]])
    assert "this looks like the negative template, not the positive template" in refused(data)


def test_stamped_workbook_of_another_kind_or_unknown_version():
    assert "this is the negative template" in refused(good_sheet(keywords="nccid-template:negative:1.0"))
    message = refused(good_sheet(keywords="nccid-template:positive:1.3"))
    assert message.startswith("template version 1.3 of the positive template is not supported")


def test_title_of_an_older_version_is_refused():
    message = refused(good_sheet(title="Covid-19 Data (Positive) Template v1.4"))
    assert "template version 1.4 of the positive template is not supported" in message


def test_missing_required_column():
    headers, row = positive_row(age=40)
    message = refused(xlsx_bytes(headers[1:], [row[1:]]))
    assert message == "required columns are missing: 'NHS/CHI Number'"


def test_no_template_column_at_all():
    assert "no column of the" in refused(xlsx_bytes(["Name", "Address"], [["x", "y"]]))


def test_duplicate_columns_are_refused():
    headers, row = positive_row(age=40)
    message = refused(xlsx_bytes(headers + ["AGE"], [row + [41]]))
    assert "are both 'Age'" in message


def test_unknown_extra_column_is_a_warning_not_a_refusal():
    headers, row = positive_row(age=40)
    sheet = reader.read_bytes(xlsx_bytes(headers + ["Favourite colour"], [row + ["blue"]]))
    layout = reader.layout(sheet, "positive")
    assert layout.warnings == [f"column {_letter(len(headers))} is not part of the "
                               "Covid-19 Data (Positive) Template v1.5 and was ignored"]


def _letter(index: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(index + 1)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252"])
def test_csv_encodings(encoding):
    headers, row = positive_row(age=40, hospital="Ysbyty Gwynedd – Bangor °")
    result = run(csv_bytes(headers, [["" if v is None else v for v in row]], encoding=encoding))
    assert result.errors == [] and result.records[0].cleaned["hospital"] == "Ysbyty Gwynedd – Bangor °"


def test_semicolon_csv_and_row_numbers_skip_blank_lines():
    headers, row = positive_row(age=40)
    text = ";".join(headers) + "\r\n\r\n" + ";".join("" if v is None else str(v) for v in row) + "\r\n"
    sheet = reader.read_bytes(text.encode())
    assert [n for n, _ in sheet.rows] == [3]


def test_xlsx_row_numbers_are_sheet_rows():
    headers, row = positive_row(age=40)
    data = xlsx_bytes(headers, [row, [None] * len(row), list(row)])
    assert [n for n, _ in reader.read_bytes(data).rows] == [2, 4]


def _zip(files: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_plain_text_without_columns_is_not_a_spreadsheet():
    assert "not a spreadsheet (no columns found)" in refused(b"Dear colleague\nplease find attached\n")


def test_a_header_that_is_an_nhs_number_is_not_repeated():
    from .helpers import PEOPLE

    headers, row = positive_row(age=40)
    sheet = reader.read_bytes(xlsx_bytes(headers + [PEOPLE[7].nhs_number], [row + ["x"]]))
    (warning,) = reader.layout(sheet, "positive").warnings
    assert PEOPLE[7].nhs_number not in warning and warning.startswith(f"column {_letter(len(headers))} is")


def test_a_cell_far_beyond_the_template_is_refused_before_the_sheet_is_read():
    """The reader builds the whole used range: one cell at XFD1048576 in a 7 KB file would make
    it set aside half a terabyte and kill the process."""
    def far(workbook):
        workbook.active["XFD1048576"] = "x"

    def far_down(workbook):
        workbook.active["A100000"] = "x"

    for build in (far, far_down):
        message = refused(good_sheet(build=build))
        assert message.startswith("the first sheet reaches beyond column CV or has more than 49,999 rows")


def test_a_damaged_part_of_an_xlsx_is_refused_not_a_crash():
    data = bytearray(good_sheet())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("xl/worksheets/sheet1.xml")
    crc_at = info.header_offset + 14  # the local header's CRC-32
    data[crc_at:crc_at + 4] = bytes(4 - i for i in range(4))
    central = data.index(b"xl/worksheets/sheet1.xml", info.header_offset + 30 + 1) - 46 + 16
    data[central:central + 4] = bytes(4 - i for i in range(4))
    assert "damaged" in refused(bytes(data))


def test_a_csv_of_more_rows_than_the_limit_is_refused_before_it_is_parsed(monkeypatch):
    monkeypatch.setattr(reader, "MAX_ROWS", 3)
    headers, row = positive_row(age=40)
    message = refused(csv_bytes(headers, [row] * 5))
    assert message.startswith("the file has more than")
    assert reader.read_bytes(csv_bytes(headers, [row] * 2)).rows  # within the limit: read


def test_a_password_protected_xlsx_is_named_as_such():
    # The downloaded template encrypted with a password (as Excel's "Encrypt with Password"
    # does): an Office container, like an old .xls, holding an EncryptedPackage stream.
    data = (Path(__file__).parent / "data" / "password_protected_template.xlsx").read_bytes()
    assert data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    assert refused(data) == ("the file is password-protected: remove the password (File > Info > "
                             "Protect Workbook) and upload again")


def test_an_opendocument_spreadsheet_is_named_as_such():
    ods = _zip({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet",
                "content.xml": b"<office:document-content/>"})
    assert refused(ods) == "this is an OpenDocument (.ods) file: save it as .xlsx or CSV and upload again"


def _csv_text(delimiter: str = ",") -> str:
    headers, row = positive_row(age=40, temperature=38.5)
    return "\r\n".join(delimiter.join("" if v is None else str(v) for v in line)
                       for line in (headers, row)) + "\r\n"


def test_excels_separator_line_names_the_separator_and_is_not_a_row():
    sheet = reader.read_bytes(("sep=;\r\n" + _csv_text(";")).encode())
    result = run(("sep=;\r\n" + _csv_text(";")).encode())
    assert [n for n, _ in sheet.rows] == [2]  # as Excel shows it: the sep= line is hidden
    assert result.errors == [] and result.records[0].cleaned["temperature"] == 38.5


def test_a_title_line_above_csv_headers_gets_the_headers_in_row_1_hint():
    message = refused(("Covid-19 Data (Positive) Template v1.5\r\n" + _csv_text()).encode())
    assert message.startswith("no column of the Covid-19 Data (Positive) Template v1.5 was found in "
                              "the first row: is this the right template, with the headers in row 1?")


def test_excels_unicode_text_export_is_read():
    # "Unicode Text (*.txt)": UTF-16 with a byte-order mark, tab-separated.
    result = run(_csv_text("\t").encode("utf-16"))
    assert result.errors == [] and result.records[0].cleaned["age"] == 40
