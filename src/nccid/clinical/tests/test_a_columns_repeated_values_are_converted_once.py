"""A column repeats its values (a ward, a code, the dates of a few months): each distinct value
is converted once per sheet and its result reused, which took a quarter off validating the
20,000-row bench sheet. What a cell gives must not change: a value is remembered by its type
too, a zero by its sign, a time with a zone not at all, and a refused value is refused (and
reported) on every row that holds it."""

import datetime as dt

from nccid.clinical import reader, validation
from nccid.clinical.schema import get_template
from nccid.identity.keys import Keyring

from .helpers import PEOPLE, template_row

TEMPLATE = get_template("positive")
WARD = "Royal Synthetic Infirmary, Ward 12"
KEYRING = Keyring(b"t" * 32)


def _validated(rows: list[dict]) -> validation.Result:
    cells = [tuple(template_row(TEMPLATE, person, dict(values)))
             for person, values in zip(PEOPLE[:len(rows)], rows, strict=True)]
    sheet = reader.Sheet(headers=TEMPLATE.headers, rows=[(n + 2, row) for n, row in enumerate(cells)],
                         format="xlsx")
    return validation.validate(sheet, reader.layout(sheet, "positive"), validation.SiteRules("RTEST"),
                               KEYRING)


def _by_row(result: validation.Result, field: str) -> dict[int, tuple[object, object]]:
    return {r.rows[0]: (r.data.get(field), r.cleaned.get(field)) for r in result.records}


def test_each_distinct_value_of_a_column_is_converted_once(monkeypatch):
    converted: dict[str, list] = {}
    compile_column = validation.compile_column

    def counting(column, *args, **kwargs):
        convert = compile_column(column, *args, **kwargs)
        return lambda value: converted.setdefault(column.field, []).append(value) or convert(value)

    monkeypatch.setattr(validation, "compile_column", counting)
    rows = [{"hospital": WARD, "sex": 1.0, "crp": 12.5 if n % 2 else 30.0,
             "date_of_admission": dt.datetime(2020, 7, 13)} for n in range(30)]
    result = _validated(rows)
    assert len(result.records) == 30 and not result.problems
    assert converted["hospital"] == [WARD] and converted["sex"] == [1.0]
    assert converted["crp"] == [30.0, 12.5] and converted["date_of_admission"] == [dt.datetime(2020, 7, 13)]
    assert {r.data["hospital"] for r in result.records} == {WARD}


def test_equal_values_of_other_types_or_signs_keep_their_own_results():
    # 1 == 1.0 == True, but a code cell of TRUE is no code; -0.0 == 0.0, but is kept as typed.
    values = [1, 1.0, True, "1", 0.0, -0.0]
    rows = [{"sex": value, "crp": value if type(value) is float else None} for value in values * 2]
    result = _validated(rows)
    sex, crp = _by_row(result, "sex"), _by_row(result, "crp")
    for row in (2, 3, 5, 8, 9, 11):  # 1, 1.0 and "1" are code 1
        assert sex[row][0] == "1"
    for row in (6, 12):  # 0.0
        assert str(crp[row]) == "(0.0, 0.0)"
    for row in (7, 13):  # -0.0, after a 0.0 each time
        assert str(crp[row]) == "(-0.0, -0.0)"
    refused = [p.row for p in result.problems if p.column == TEMPLATE.field("sex").header]
    assert refused == [4, 10]  # TRUE, after a 1 and a 1.0 each time


def test_a_refused_value_is_reported_on_every_row_holding_it():
    result = _validated([{"age": "not measured"}] * 3 + [{"age": 150}] * 3)
    age = TEMPLATE.field("age").header
    assert [(p.row, p.severity) for p in result.problems if p.column == age] == [
        (2, "error"), (3, "error"), (4, "error"), (5, "warning"), (6, "warning"), (7, "warning")]
    assert sorted(result.rejected_rows) == [2, 3, 4]
    assert [r.flags for r in result.records] == [["age"]] * 3


def test_a_time_with_a_zone_reads_its_own_date():
    # The same instant: 23:30 on 13 July in UTC is 00:30 on 14 July an hour east.
    utc = dt.datetime(2020, 7, 13, 23, 30, tzinfo=dt.UTC)
    east = dt.datetime(2020, 7, 14, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert utc == east
    result = _validated([{"date_of_admission": utc}, {"date_of_admission": east}])
    assert _by_row(result, "date_of_admission") == {2: ("2020-07-13", "2020-07-13"),
                                                    3: ("2020-07-14", "2020-07-14")}
