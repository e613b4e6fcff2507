"""Values in a column without a header are not read: the upload says so in one sheet warning
naming the columns, shown in the preview with the other sheet warnings. A column without a
header that holds nothing is not mentioned."""

import pytest
from openpyxl.utils import get_column_letter

from nccid.clinical import services
from nccid.clinical.schema import get_template

from .helpers import PEOPLE, csv_bytes, positive_row, xlsx_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _warnings_about_headers(upload) -> list[str]:
    return [w for w in upload.sheet_warnings if "no header" in w]


def test_values_under_blank_headers_get_one_warning_naming_their_columns(site, make_user):
    template = get_template("positive")
    hospital = [c.field for c in template.template_columns()].index("hospital")
    headers, row = positive_row(hospital="Royal Test Infirmary", age=50)
    headers = list(headers)
    headers[hospital] = ""  # a header deleted over a column that holds values
    width = len(headers)
    # After the headers: an empty column, one holding values, another empty one.
    headers += [None, None, None]
    # A row holding a value only there is not a row of data, but its value is counted too.
    sheet = xlsx_bytes(headers, [row + [None, "looked up", None], [None] * (width + 1) + ["x"]])
    upload = services.preview_upload(site, "positive", "sheet.xlsx", sheet,
                                     make_user("uploader", site=site))
    letters = f"{get_column_letter(hospital + 1)}, {get_column_letter(width + 2)}"
    assert _warnings_about_headers(upload) == [
        f"columns {letters} hold values but have no header: they were not read"]
    assert (upload.status, upload.total_rows, upload.accepted_rows) == ("preview", 1, 1)
    [record] = upload.staged["records"]
    assert record["data"] == {"age": 50}


def test_one_column_in_a_csv_is_named_alone(site, make_user):
    template = get_template("positive")
    rows = [positive_row(PEOPLE[1], age=40)[1] + ["", "kept aside"]]
    data = csv_bytes(template.headers + ["", ""], [[("" if v is None else v) for v in r] for r in rows])
    upload = services.preview_upload(site, "positive", "sheet.csv", data, make_user("uploader", site=site))
    column = get_column_letter(len(template.headers) + 2)
    assert _warnings_about_headers(upload) == [
        f"column {column} holds values but has no header: they were not read"]


def test_empty_columns_without_a_header_are_not_mentioned(site, make_user):
    headers, row = positive_row(age=50)
    sheet = xlsx_bytes(list(headers) + [None, None], [row + [None, "  "]])
    upload = services.preview_upload(site, "positive", "sheet.xlsx", sheet, make_user("uploader", site=site))
    assert upload.status == "preview" and _warnings_about_headers(upload) == []
