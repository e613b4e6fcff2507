"""``nccid link``: a file without a header row, or an unusable output path, gives one clear
line that repeats no cell of the file (its first row may be a patient's number, name, birth date)."""

from __future__ import annotations

import pytest

from nccid.cli.tests.clirun import run_cli
from nccid.identity.linkfile import LinkFileError, link_csv
from nccid.synthetic.people import nhs_test_numbers

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def number():
    return nhs_test_numbers(1, start=777)[0]


def test_a_file_without_a_header_row_is_described_by_columns_not_values(tmp_path, number, keyring):
    source = tmp_path / "noheader.csv"
    source.write_text(f"{number},Ada Lovelace,1970-01-02\n", encoding="utf-8")
    with pytest.raises(LinkFileError) as caught:
        link_csv(source, tmp_path / "out.csv", "nhs_number", keyring)
    message = str(caught.value)
    assert "3 columns" in message and "first row looks like data" in message
    assert "add a header row" in message
    for value in (number, "Ada", "Lovelace", "1970"):
        assert value not in message
    assert not (tmp_path / "out.csv").exists()


def test_headers_that_could_be_names_are_named_by_position(tmp_path, number, keyring):
    source = tmp_path / "in.csv"
    source.write_text(f"study,Grace Hopper,score\nS1,{number},2\n", encoding="utf-8")
    with pytest.raises(LinkFileError) as caught:
        link_csv(source, tmp_path / "out.csv", "nhs_number", keyring)
    message = str(caught.value)
    assert "'study'" in message and "'score'" in message and "column 2 (not shown)" in message
    assert "Grace" not in message and "Hopper" not in message


@pytest.mark.parametrize("where", ["missing-folder", "a-folder"])
def test_an_unusable_output_path_is_one_clear_error_and_nothing_is_written(tmp_path, number, monkeypatch, where):
    source = tmp_path / "in.csv"
    source.write_text(f"nhs_number\n{number}\n", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    output = tmp_path / "nowhere" / "out.csv" if where == "missing-folder" else tmp_path / "folder"
    result = run_cli(monkeypatch, "link", str(source), "-o", str(output))
    assert result.code == 1
    assert "Traceback" not in result.err
    expected = "does not exist" if where == "missing-folder" else "is a folder"
    assert expected in result.err_text and result.err_text.count("error:") == 1
    assert list((tmp_path / "folder").iterdir()) == []
