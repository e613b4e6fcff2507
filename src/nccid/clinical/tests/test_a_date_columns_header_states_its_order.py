"""A date column's header stating its day/month order ("Date of admission (MM/DD/YYYY)", as an
old template asked) decides how that column's slash dates are read, over the site's setting;
the header's order was ignored, so 04/05/2020 under "(MM/DD/YYYY)" was stored as 4 May. A
column read otherwise than the site's setting is said once."""

import pytest
from openpyxl.utils import get_column_letter

from nccid.clinical.schema import get_template

from .helpers import PEOPLE, positive_row, run, xlsx_bytes

TEMPLATE = get_template("positive")
ADMISSION = TEMPLATE.headers.index("Date of admission")


def _sheet(header: str, dates: list[str]) -> bytes:
    headers = list(TEMPLATE.headers)
    headers[ADMISSION] = header
    rows = [positive_row(PEOPLE[i], date_of_admission=d, date_of_death="03/04/2020")[1]
            for i, d in enumerate(dates)]
    return xlsx_bytes(headers, rows)


@pytest.mark.parametrize("header, site_order, stored, warned", [
    ("Date of admission (MM/DD/YYYY)", "DMY", "2020-04-05", True),
    ("Date of admission (mm/dd/yy)", "DMY", "2020-04-05", True),
    ("Date of admission (DD/MM/YYYY)", "MDY", "2020-05-04", True),
    ("Date of admission (dd/mm/yy)", "DMY", "2020-05-04", False),
    ("Date of admission (YYYY-MM-DD)", "DMY", "2020-05-04", False),  # no slash order stated
])
def test_the_headers_order_reads_the_columns_slash_dates(header, site_order, stored, warned):
    result = run(_sheet(header, ["04/05/2020", "04/05/20"]), date_format=site_order)
    assert [r.cleaned["date_of_admission"] for r in result.records] == [stored, stored]
    warnings = [w for w in result.sheet_warnings if "as its header says" in w]
    assert len(warnings) == (1 if warned else 0)
    if warned:
        assert warnings[0].startswith(f"column {get_column_letter(ADMISSION + 1)} ('Date of admission') "
                                      "is read as ")


def test_other_date_columns_keep_the_sites_order():
    result = run(_sheet("Date of admission (MM/DD/YYYY)", ["04/05/2020"]), date_format="DMY")
    assert result.records[0].cleaned["date_of_death"] == "2020-04-03"


def test_a_day_first_date_under_a_month_first_header_is_refused_on_its_row():
    result = run(_sheet("Date of admission (MM/DD/YYYY)", ["04/05/2020", "04/15/2020", "25/04/2020"]),
                 date_format="DMY")
    assert result.rejected_rows == {4}
