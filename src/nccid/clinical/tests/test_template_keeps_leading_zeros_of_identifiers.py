"""The template's identifier columns are formatted as Text: in a General column Excel turns
a typed hospital number 00123456 into the number 123456 (and a CHI number 0101… loses its
first digit), so images whose DICOM patient ID is 00123456 would never be linked."""

import io

import pytest
from openpyxl import load_workbook

from nccid.clinical.schema import get_template
from nccid.clinical.xlsx_template import build_workbook


@pytest.mark.parametrize("kind", ["positive", "negative", "isaric"])
def test_identifier_columns_are_text_and_others_are_not(kind):
    buffer = io.BytesIO()
    build_workbook(kind).save(buffer)
    sheet = load_workbook(buffer).worksheets[0]
    formats = {cell.value: sheet.column_dimensions[cell.column_letter].number_format
               for cell in sheet[1]}
    template = get_template(kind)
    identifiers = {c.header for c in template.template_columns() if c.identifier}
    assert len(identifiers) == 2
    assert {header: formats[header] for header in identifiers} == dict.fromkeys(identifiers, "@")
    assert all(formats[c.header] != "@" for c in template.template_columns() if not c.identifier)
