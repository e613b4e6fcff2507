"""The research commands run as the real ``nccid`` entry point, in a process of their own.

CliRunner tests run inside pytest, where Django is already set up, so they cannot see a command
that imports models (or evaluates an ``except`` naming model-backed errors) before setting it up.
"""

import json
import os
import subprocess
import sys

import pytest


def nccid(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nccid.cli.main", *args], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ), input=stdin)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The single stderr line of a refused command (no traceback)."""
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture
def home(nccid_home):
    assert nccid("init").returncode == 0
    for name, role in (("dora", "data-manager"), ("rita", "researcher")):
        made = nccid("user", "add", name, "--role", role, "--password-stdin",
                     stdin="a-long-test-password-2020\n")
        assert made.returncode == 0, made.stderr
    return nccid_home


def test_teaching_commands_run_in_a_fresh_process(home, tmp_path):
    listed = nccid("research", "teaching", "list", "--user", "dora")
    assert listed.returncode == 0, listed.stderr
    assert "Collection" in listed.stdout
    assert "no teaching collection 'Demo'" in one_line_error(
        nccid("research", "teaching", "export", "Demo", "--user", "dora", "-o", str(tmp_path / "t")))
    assert "training set" in one_line_error(
        nccid("research", "teaching", "add", "Demo", "--user", "dora", "--pseudonym", "NCCID-X",
              "--study", "1.2.3"))


def test_bad_cohort_filters_are_one_line_in_a_fresh_process(home, tmp_path):
    bad_options = {"study_date_from": ["--from", "notadate"], "study_date_to": ["--to", "2020-13-01"],
                   "age range 90-10 is empty": ["--age-min", "90", "--age-max", "10"]}
    for said, options in bad_options.items():
        assert said in one_line_error(nccid("research", "cohort", "--user", "rita", *options))
    flt = tmp_path / "filter.json"
    flt.write_text(json.dumps({"study_date_from": "1/4/2020"}))
    assert "study_date_from" in one_line_error(
        nccid("research", "cohort", "--user", "rita", "--filter-json", str(flt)))
    out = tmp_path / "export"
    assert "study_date_from" in one_line_error(
        nccid("research", "export", "--user", "rita", "--from", "2020-13-01", "-o", str(out)))
    assert not out.exists()


def test_a_list_limit_out_of_range_is_refused_before_the_query(home):
    for limit in ("-1", "0", "10001"):
        refused = nccid("research", "cohort", "--user", "rita", "--list", "--limit", limit)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert "Invalid value for '--limit'" in refused.stderr
