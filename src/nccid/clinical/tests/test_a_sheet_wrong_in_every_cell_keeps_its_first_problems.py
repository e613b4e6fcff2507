"""A sheet with a mistake in every cell (49,999 rows of 100 columns of numbers, within every
limit) made 4 million problems: 4.3 GB while checking, then "string or blob too big" and no
upload saved. The first problems of each column are kept in full; the rest are counted by
column and severity, and every list of them (page, CSV, CLI, API) says how many more there are.
Caps are lowered here so that a few rows exceed them."""

import json

import pytest

from nccid.clinical import services, validation
from nccid.clinical.models import Upload
from nccid.clinical.schema import get_template
from nccid.clinical.validation import Problem, ProblemList

from .helpers import PEOPLE, run, template_row, xlsx_bytes

TEMPLATE = get_template("positive")


@pytest.fixture
def small_caps(monkeypatch):
    monkeypatch.setattr(validation, "PROBLEMS_PER_COLUMN", 2)
    monkeypatch.setattr(validation, "PROBLEMS_KEPT", 5)


def _wrong_sheet(rows: int) -> bytes:
    """Each row: an age that is no number and a smoking status that is no code."""
    return xlsx_bytes(TEMPLATE.headers, [
        template_row(TEMPLATE, PEOPLE[i], {"age": "old", "smoking_status": 9}) for i in range(rows)])


def test_the_list_keeps_the_first_of_each_column_and_counts_the_rest():
    problems = ProblemList(per_column=2, limit=3)  # limit: of each severity
    for row in range(2, 102):
        problems.append(Problem(row, "Age", "Age", "x", "not a number"))
        problems.append(Problem(row, "Height", "Height", "x", "not a number"))
        problems.extend([Problem(row, "Sex", "Sex", "x", "not a code", "warning")])
    assert [(p.row, p.column) for p in problems] == [
        (2, "Age"), (2, "Height"), (2, "Sex"), (3, "Age"), (3, "Sex")]
    assert problems.omitted_list() == [{"column": "Height", "severity": "error", "count": 99},
                                       {"column": "Age", "severity": "error", "count": 98},
                                       {"column": "Sex", "severity": "warning", "count": 98}]


def test_warnings_in_every_cell_leave_room_for_the_errors():
    """1,200 rows with a warning in 10 columns kept 10,000 warnings and none of the 3 errors
    found after them: the site could not find the rows refused."""
    problems = ProblemList()
    for row in range(2, 1202):
        problems.extend(Problem(row, f"Lab {c}", f"Lab {c}", "", "outside the plausible range",
                                "warning") for c in range(10))
        if row in (1100, 1150, 1190):
            problems.append(Problem(row, "Date of admission", "Date of admission", "",
                                    "not a valid date"))
    assert [p.row for p in problems if p.severity == "error"] == [1100, 1150, 1190]
    assert sum(p.severity == "warning" for p in problems) == validation.PROBLEMS_KEPT
    assert sum(o["count"] for o in problems.omitted_list()) == 1200 * 10 - validation.PROBLEMS_KEPT


def test_validation_keeps_a_bounded_list_and_counts_every_problem(small_caps):
    result = run(_wrong_sheet(8))
    assert len(result.problems) == 4  # two per column
    assert sum(o["count"] for o in result.omitted) + len(result.problems) == 16
    assert {o["column"] for o in result.omitted} == {TEMPLATE.field("age").header,
                                                   TEMPLATE.field("smoking_status").header}
    assert result.rejected_rows == set(range(2, 10))  # every row is still judged


@pytest.mark.django_db(databases=["default", "vault"])
def test_the_upload_saves_the_counts_and_the_csv_says_how_many_more(site, make_user, small_caps):
    upload = services.preview_upload(site, "positive", "wrong.xlsx", _wrong_sheet(8),
                                     make_user("uploader", site=site))
    assert upload.status == Upload.Status.REJECTED and upload.pk
    saved = Upload.objects.get(pk=upload.pk)
    assert len(saved.errors) == 4 and saved.error_count == 16 and saved.omitted_count == 12
    text = services.errors_as_csv(saved)
    assert "and 6 more errors in this column, not listed" in text
    assert text.count("not listed") == 2


@pytest.mark.django_db(databases=["default", "vault"])
def test_a_value_equal_to_a_linked_number_is_not_kept_when_its_warning_is_only_counted(
        site, make_user, monkeypatch):
    """The check that hides a warned value equal to a site's hospital number looked only at the
    problems kept: it looks at the values kept in the rows too."""
    user = make_user("uploader", site=site)
    numbers = ["482913", "551203", "730118"]
    first = xlsx_bytes(TEMPLATE.headers, [
        template_row(TEMPLATE, person, {"hospital_number": number, "age": 50})
        for person, number in zip(PEOPLE, numbers, strict=False)])
    services.confirm_upload(services.preview_upload(site, "positive", "first.xlsx", first, user), user)
    monkeypatch.setattr(validation, "PROBLEMS_PER_COLUMN", 1)
    later = xlsx_bytes(TEMPLATE.headers, [
        template_row(TEMPLATE, PEOPLE[5], {"hospital_number": None, "age": 50, "platelet_count": 250001}),
        template_row(TEMPLATE, PEOPLE[6], {"hospital_number": None, "age": 50,
                                           "platelet_count": int(numbers[2])})])
    upload = services.preview_upload(site, "positive", "later.xlsx", later, user)
    assert upload.omitted_problems == [{"column": TEMPLATE.field("platelet_count").header,
                                        "severity": "warning", "count": 1}]
    assert [r["rows"] for r in upload.staged["records"]] == [[2], [3]]  # a warning keeps its row
    assert numbers[2] not in json.dumps(list(Upload.objects.values("errors", "staged")))


@pytest.mark.django_db(databases=["default", "vault"])
def test_an_internal_failure_is_a_saved_refused_upload(site, make_user, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(services, "validate", out_of_memory)
    upload = services.preview_upload(site, "positive", "any.xlsx", _wrong_sheet(1),
                                     make_user("uploader", site=site))
    saved = Upload.objects.get(pk=upload.pk)
    assert saved.status == Upload.Status.REJECTED
    assert saved.message.startswith("the file could not be checked: an internal error")
    assert f"upload {saved.pk} in the log" in saved.message
