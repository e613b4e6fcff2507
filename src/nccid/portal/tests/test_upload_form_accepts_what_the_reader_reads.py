"""The upload form names the formats the clinical reader reads (.xlsx, .xlsm, .csv) and refuses
others (.xls, .ods, ...) at once, saying how to convert them, instead of advertising .ods and
then failing with "The file is not a spreadsheet"."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from nccid.clinical.reader import read_bytes
from nccid.portal.forms import SPREADSHEET_SUFFIXES, UploadForm
from nccid.synthetic.clinical import write_sheet
from nccid.synthetic.people import people

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", ["patients.ods", "patients.xls", "patients.numbers", "notes.txt"])
def test_a_format_the_reader_does_not_read_is_refused_saying_how_to_convert(client, site, make_user,
                                                                             name):
    client.force_login(make_user("uploader", site))
    answer = client.post("/upload/positive/", {"file": SimpleUploadedFile(name, b"PK\x03\x04data")})
    body = answer.content.decode()
    assert answer.status_code == 400
    assert "must be an Excel workbook (.xlsx) or a CSV file (.csv)" in body
    assert "Save As" in body and "save it as .xlsx or CSV" in body
    assert "Another kind of spreadsheet: save it as .xlsx or CSV first." in body  # the hint


def test_every_suffix_the_form_takes_is_one_the_reader_reads(tmp_path):
    path = tmp_path / "positive.xlsx"
    write_sheet("positive", people(1, seed=43), path, errors=0, seed=2)
    workbook = path.read_bytes()
    csv = b"Pseudonym,Age\nx,1\n"
    for suffix in SPREADSHEET_SUFFIXES:
        data = csv if suffix == ".csv" else workbook
        form = UploadForm(files={"file": SimpleUploadedFile("sheet" + suffix, data)})
        assert form.is_valid(), (suffix, form.errors)
        assert read_bytes(data).format == ("csv" if suffix == ".csv" else "xlsx")
