"""``nccid link``: NHS/CHI numbers to the same pseudonyms as the clinical import, numbers dropped."""

from __future__ import annotations

import csv

import pytest

from nccid.cli.tests.clirun import run_cli
from nccid.identity.linkfile import ERROR_COLUMN, LinkFileError, link_csv
from nccid.identity.service import pseudonymise
from nccid.synthetic.people import nhs_test_numbers, spaced

CHI = "0101010015"


def write_csv(path, header, rows, encoding="utf-8"):
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


@pytest.fixture
def numbers():
    return nhs_test_numbers(6, start=31337)


@pytest.mark.django_db(databases=["default", "vault"])
def test_cli_link_round_trip_gives_the_clinical_import_pseudonyms(tmp_path, numbers, monkeypatch):
    rows = [[f"S{i}", spaced(n) if i % 2 else n, f"{i * 1.5}"] for i, n in enumerate(numbers)]
    rows += [["S98", CHI, "2"], ["S99", "9990000019", "3"], ["S100", "", "4"]]
    source = write_csv(tmp_path / "national.csv", ["study_id", "NHS Number", "score"], rows)
    target = tmp_path / "linked.csv"
    result = run_cli(monkeypatch, "link", str(source), "--column", "nhs_number", "-o", str(target))
    assert result.code == 0, result.err
    header, *body = read_csv(target)
    assert header == ["study_id", "pseudonym", ERROR_COLUMN, "score"]
    expected = [pseudonymise(n)[0] for n in numbers] + [pseudonymise(CHI)[0], "", ""]
    assert [r[1] for r in body] == expected
    assert [r[0] for r in body] == [r[0] for r in rows] and [r[3] for r in body] == [r[2] for r in rows]
    assert "modulus 11" in body[-2][2] and body[-1][2] == "is empty"
    data = target.read_bytes()
    for n in [*numbers, CHI, "9990000019"]:
        assert n.encode() not in data and spaced(n).encode() not in data
        assert n not in result.out + result.err
    assert "row 9: nhs_number fails" in result.err_text and "row 10: nhs_number is empty" in result.err_text
    assert "7 pseudonymised, 2 invalid" in " ".join(result.out.split())


@pytest.mark.django_db(databases=["default", "vault"])
def test_cli_link_strict_fails_with_row_numbers_and_writes_nothing(tmp_path, numbers, monkeypatch):
    rows = [[n] for n in numbers[:3]] + [["9990000019"], [numbers[3]], ["12345"]]
    source = write_csv(tmp_path / "in.csv", ["nhs_number"], rows)
    target = tmp_path / "out.csv"
    result = run_cli(monkeypatch, "link", str(source), "-o", str(target), "--strict")
    assert result.code == 1
    assert "row 5: nhs_number fails the NHS number check digit" in result.err_text
    assert "row 7: nhs_number must have 10 digits" in result.err_text
    assert "Traceback" not in result.err and "9990000019" not in result.err
    assert not target.exists() and list(tmp_path.iterdir()) == [source]


def test_strict_link_of_valid_file_has_no_error_column(tmp_path, keyring, numbers):
    source = write_csv(tmp_path / "in.csv", ["a", "nhs_number"], [["x", n] for n in numbers])
    summary = link_csv(source, tmp_path / "out.csv", "nhs_number", keyring, strict=True)
    assert summary.pseudonymised == 6 and summary.invalid == 0
    assert read_csv(tmp_path / "out.csv")[0] == ["a", "pseudonym"]


def test_link_handles_100k_rows_streaming(tmp_path, keyring):
    numbers = nhs_test_numbers(1000, start=50_000)
    source = tmp_path / "big.csv"
    with open(source, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "nhs_number", "note"])
        for i in range(100_000):
            writer.writerow([i, numbers[i % 1000], "ok"])
    seen = []
    summary = link_csv(source, tmp_path / "out.csv", "nhs_number", keyring, progress=seen.append)
    assert (summary.rows, summary.pseudonymised, summary.invalid) == (100_000, 100_000, 0)
    assert seen[-1] == source.stat().st_size and seen == sorted(seen) and len(seen) > 10
    with open(tmp_path / "out.csv", newline="") as handle:
        reader = csv.reader(handle)
        assert next(reader) == ["row", "pseudonym", ERROR_COLUMN, "note"]
        lookup = {keyring.pseudonym(n): n for n in numbers}
        rows = 0
        for row in reader:
            assert lookup[row[1]] == numbers[int(row[0]) % 1000]
            rows += 1
    assert rows == 100_000


def test_ragged_rows_stop_the_run_because_a_number_could_shift_into_a_kept_column(tmp_path, keyring, numbers):
    source = tmp_path / "in.csv"
    source.write_text(f"name,nhs_number,x\nAda,{numbers[0]},1\nSmith, Jo,{numbers[1]},2\n")
    target = tmp_path / "out.csv"
    with pytest.raises(LinkFileError, match=r"rows 3\).*nothing was written"):
        link_csv(source, target, "nhs_number", keyring)
    assert not target.exists()


def test_warns_about_other_columns_that_hold_numbers(tmp_path, keyring, numbers):
    source = write_csv(tmp_path / "in.csv", ["nhs_number", "mother_nhs"],
                       [[numbers[0], numbers[1]], [numbers[2], ""]])
    summary = link_csv(source, tmp_path / "out.csv", "nhs_number", keyring)
    assert summary.suspicious_columns == {"mother_nhs": 1}


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty"),
    (b"PK\x03\x04rest-of-a-zip", "xlsx/zip file, not a CSV"),
    (b"id,nhs\n1,2\n", "no column 'nhs_number'.*'id', 'nhs'"),
    (b"nhs_number,pseudonym\n1,2\n", "already has a 'pseudonym' column"),
    (b"nhs_number,NHS_Number\n1,2\n", "appears 2 times"),
    (b"nhs_number,name\n9990000018,Ren\xe9e\n", "not utf-8-sig text.*--encoding"),
])
def test_bad_files_give_a_clear_error_and_no_output(tmp_path, keyring, content, reason):
    source = tmp_path / "in.csv"
    source.write_bytes(content)
    with pytest.raises(LinkFileError, match=reason):
        link_csv(source, tmp_path / "out.csv", "nhs_number", keyring)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_latin1_file_links_with_the_right_encoding(tmp_path, keyring, numbers):
    source = write_csv(tmp_path / "in.csv", ["nhs_number", "name"], [[numbers[0], "Renée"]],
                       encoding="cp1252")
    link_csv(source, tmp_path / "out.csv", "nhs_number", keyring, encoding="cp1252")
    assert read_csv(tmp_path / "out.csv")[1] == [keyring.pseudonym(numbers[0]), "", "Renée"]


def test_output_may_not_overwrite_the_input(tmp_path, keyring, numbers):
    source = write_csv(tmp_path / "in.csv", ["nhs_number"], [[numbers[0]]])
    with pytest.raises(LinkFileError, match="must not be the input"):
        link_csv(source, source, "nhs_number", keyring)
    assert numbers[0] in source.read_text()
