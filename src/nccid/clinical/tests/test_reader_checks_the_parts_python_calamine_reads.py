"""python-calamine finds a part of the xlsx by its name in any case ("xl/SharedStrings.xml", as
some producers write it, is the shared strings part) and, when the archive holds the name more
than once, reads the last. It does not follow the workbook's relationships to the shared
strings: a part of another name is not read (the sheet's text is then missing and the file
refused as damaged). The checks read the very parts python-calamine reads."""

import io
import zipfile

import pytest

from nccid.clinical import reader
from nccid.clinical.reader import SpreadsheetRejected

from .helpers import positive_row
from .test_reader_accepts_what_excel_writes_around_the_values import (
    SHEET,
    good_sheet,
    with_shared_strings,
)


def refused(data: bytes) -> str:
    with pytest.raises(SpreadsheetRejected) as caught:
        reader.layout(reader.read_bytes(data), "positive")
    return str(caught.value)


def renamed(data: bytes, names: dict[str, str], added: list[tuple[str, bytes]] = ()) -> bytes:
    """The xlsx with parts renamed (``names``: old -> new) and ``added`` parts written last."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in source.namelist():
            archive.writestr(names.get(name, name), source.read(name))
        for name, text in added:
            archive.writestr(name, text)
    return out.getvalue()


def test_shared_strings_named_in_another_case_are_checked(monkeypatch):
    data = renamed(with_shared_strings(good_sheet()), {"xl/sharedStrings.xml": "xl/SharedStrings.xml"})
    assert reader.read_bytes(data).headers == reader.read_bytes(good_sheet()).headers  # read as ever
    monkeypatch.setitem(reader.PART_LIMITS, "xl/sharedStrings.xml", 1024)
    assert refused(data).startswith("the spreadsheet's text (its shared strings) is more than 0 MB")


def test_template_headers_on_another_sheet_are_read_from_shared_strings_in_another_case():
    def second_batch(workbook):
        workbook.create_sheet("More").append(positive_row()[0])

    data = with_shared_strings(good_sheet(build=second_batch))
    assert "sheet 2 (in order) also holds template columns" in refused(
        renamed(data, {"xl/sharedStrings.xml": "xl/SHAREDSTRINGS.XML"}))


def test_the_last_part_of_a_name_in_any_case_is_the_one_checked():
    data = good_sheet()
    sheet = zipfile.ZipFile(io.BytesIO(data)).read(SHEET)
    formula = sheet.replace(b'<c r="D2" t="n"><v>40</v></c>', b'<c r="D2"><f>40+1</f><v>41</v></c>')
    assert formula != sheet
    assert "contains formulas" in refused(renamed(data, {}, [("xl/worksheets/Sheet1.xml", formula)]))
    assert "contains formulas" in refused(renamed(data, {SHEET: "xl/worksheets/SHEET1.xml"},
                                                  [("xl/worksheets/sheet1.xml", formula)]))


def test_a_shared_strings_part_of_another_name_is_not_read():
    """Where python-calamine does not look, nothing is read: the file is refused."""
    data = renamed(with_shared_strings(good_sheet()), {"xl/sharedStrings.xml": "xl/strings.xml"})
    assert "could not be read" in refused(data)
