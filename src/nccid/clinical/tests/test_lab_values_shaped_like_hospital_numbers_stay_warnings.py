"""At a site whose hospital numbers are all digits, a lab value with their pattern (a platelet
count typed per µL, 250000) had become an error "holds what looks like a hospital number" and
refused its row. In a number, code or date column such a value is only not shown: the
warning stays a warning. The pattern rule refuses rows for free-text cells only; a value that
equals a hospital number is neither shown nor kept."""

import json

import pytest

from nccid.clinical import services
from nccid.clinical.models import Upload
from nccid.clinical.schema import get_template

from .helpers import PEOPLE, run, template_row, xlsx_bytes

TEMPLATE = get_template("positive")
NUMBERS = ["482913", "551203", "730118"]


def _sheet(values: list[dict]) -> bytes:
    rows = [template_row(TEMPLATE, person, {"hospital_number": number, "age": 50, **extra})
            for person, number, extra in zip(PEOPLE, NUMBERS, values, strict=False)]
    return xlsx_bytes(TEMPLATE.headers, rows)


@pytest.mark.parametrize("typed", [250000, "250000"])
def test_a_lab_value_with_the_pattern_of_the_sites_numbers_is_a_hidden_warning(typed):
    result = run(_sheet([{"platelet_count": typed}, {}, {}]))
    [problem] = result.problems
    assert (problem.row, problem.severity, problem.value) == (2, "warning", "")
    assert "250000" not in problem.reason and "outside the plausible range" in problem.reason
    assert result.rejected_rows == set() and len(result.records) == 3
    assert result.records[0].cleaned["platelet_count"] is None


def test_a_number_equal_to_a_hospital_number_of_the_upload_is_neither_shown_nor_kept():
    result = run(_sheet([{"platelet_count": int(NUMBERS[1])}, {}, {}]))
    [problem] = result.problems
    assert (problem.row, problem.severity, problem.value) == (2, "warning", "")
    assert result.rejected_rows == set()
    assert NUMBERS[1] not in repr([p.as_dict() for p in result.problems] + [r.data for r in result.records])


def test_free_text_with_the_pattern_still_refuses_its_row():
    result = run(_sheet([{"hospital": "see 123456"}, {}, {}]))
    assert result.rejected_rows == {2}


@pytest.mark.django_db(databases=["default", "vault"])
def test_a_warned_value_equal_to_a_linked_number_is_hidden_not_refused(site, make_user):
    user = make_user("uploader", site=site)
    first = services.preview_upload(site, "positive", "first.xlsx", _sheet([{}, {}, {}]), user)
    services.confirm_upload(first, user)
    later = xlsx_bytes(TEMPLATE.headers, [template_row(TEMPLATE, PEOPLE[5], {
        "hospital_number": None, "age": 50, "platelet_count": int(NUMBERS[2])})])
    upload = services.preview_upload(site, "positive", "later.xlsx", later, user)
    assert [(e["row"], e["severity"], e["value"]) for e in upload.errors] == [(2, "warning", "")]
    assert [r["rows"] for r in upload.staged["records"]] == [[2]]
    stored = json.dumps(list(Upload.objects.values("errors", "sheet_warnings", "staged", "message")))
    assert NUMBERS[2] not in stored
