"""The downloadable template: headers, frozen row, drop-downs, hints, version stamp; then it
is filled in and validates."""

import csv
import io

from openpyxl import load_workbook
from typer.testing import CliRunner

from nccid.cli.main import typer_app
from nccid.clinical import reader
from nccid.clinical.schema import get_template
from nccid.clinical.xlsx_template import write_template

from .helpers import PEOPLE, run


def test_xlsx_template_looks_like_the_familiar_sheet(tmp_path):
    path = write_template("positive", tmp_path / "positive.xlsx")
    workbook = load_workbook(path)
    sheet = workbook.worksheets[0]
    template = get_template("positive")
    assert [c.value for c in sheet[1]] == template.headers
    assert sheet.freeze_panes == "A2"
    assert all(ws.sheet_state == "visible" for ws in workbook.worksheets)
    assert workbook.properties.keywords == "nccid-template:positive:1.5"
    assert workbook.properties.title == "Covid-19 Data (Positive) Template v1.5"
    assert "Template version 1.5" in workbook["About"]["A2"].value
    validations = {str(v.sqref).split(":")[0]: v for v in sheet.data_validations.dataValidation}
    smoking = template.headers.index(template.field("smoking_status").header)
    letter = sheet.cell(row=1, column=smoking + 1).column_letter
    assert validations[f"{letter}2"].type == "list"
    assert validations[f"{letter}2"].formula1 == '"0,1,2,3"'
    assert validations[f"{letter}2"].prompt == "Never = 0, Ex-smoker = 1, Current = 2, Unknown = 3"
    assert len(validations) == len(template.headers)  # every column has an input hint


def test_filled_template_validates(tmp_path):
    path = write_template("positive", tmp_path / "positive.xlsx")
    workbook = load_workbook(path)
    sheet = workbook.worksheets[0]
    template = get_template("positive")
    values = {"NHS/CHI Number": PEOPLE[0].nhs_number, "Age": 61, "Sex (Male = 1, Female = 0)": 1,
              "Date of admission": "2020-04-02", "CRP (mg/L)": 88}
    sheet.append([values.get(h) for h in template.headers])
    filled = tmp_path / "filled.xlsx"
    workbook.save(filled)
    result = run(filled.read_bytes())
    assert result.errors == [] and len(result.records) == 1
    assert reader.read_bytes(filled.read_bytes()).stamp == ("positive", "1.5")
    cleaned = result.records[0].cleaned
    assert (cleaned["age"], cleaned["sex"], cleaned["crp"]) == (61, "Male", 88)


def test_csv_template_has_the_headers(tmp_path):
    path = write_template("negative", tmp_path / "negative.csv")
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    assert rows == [get_template("negative").headers]


def test_cli_writes_each_template(tmp_path):
    runner = CliRunner()
    for kind in ("positive", "negative", "isaric"):
        out = tmp_path / f"{kind}.xlsx"
        result = runner.invoke(typer_app, ["template", kind, "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert [c.value for c in load_workbook(out).worksheets[0][1]] == get_template(kind).headers
    bad = runner.invoke(typer_app, ["template", "positive", "-o", str(tmp_path / "x.pdf")])
    assert bad.exit_code != 0
