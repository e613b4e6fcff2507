"""Research reads run on a host without the project key file (and without the vault): with the
key, a known NHS number gives its pseudonym and a shifted date its real one, so a research
host must not hold it. What needs the key (intake, linking) still refuses without it."""

import os
import subprocess
import sys

import pytest

PASSWORD = "a-long-test-password-2020\n"
# A vault no research read may open: nothing listens on port 1.
UNREACHABLE_VAULT = "postgres://nobody@127.0.0.1:1/vault"


def nccid(*args: str, env: dict | None = None, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nccid.cli.main", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})}, input=stdin)


@pytest.fixture
def home(nccid_home):
    """An installation with accounts (data made with its key), and a researcher granted training."""
    assert nccid("init").returncode == 0
    made = nccid("user", "add", "rita", "--role", "researcher", "--research-set", "training",
                 "--password-stdin", stdin=PASSWORD)
    assert made.returncode == 0, made.stderr
    assert nccid("site", "add", "RTEST", "--name", "Test Hospital").returncode == 0
    return nccid_home


@pytest.fixture
def research_host(home, tmp_path):
    """The environment of a research host: no key file where the settings look, no vault."""
    absent = tmp_path / "no-key-here" / "secret.key"
    return {"NCCID_KEY_FILE": str(absent), "VAULT_DATABASE_URL": UNREACHABLE_VAULT}


def test_research_commands_run_without_the_key_file_or_the_vault(research_host, tmp_path):
    counted = nccid("research", "cohort", "--user", "rita", env=research_host)
    assert counted.returncode == 0, counted.stderr
    assert "0 patients, 0 studies, 0 images" in counted.stdout
    withdrawn = nccid("research", "withdrawn", "--user", "rita", env=research_host)
    assert withdrawn.returncode == 0, withdrawn.stderr
    exported = nccid("research", "export", "--user", "rita", "-o", str(tmp_path / "out"),
                     env=research_host)
    assert "key file" not in exported.stderr and "vault" not in exported.stderr, exported.stderr
    assert not os.path.exists(research_host["NCCID_KEY_FILE"])


def test_the_python_api_opens_a_cohort_without_the_key_file(research_host):
    opened = subprocess.run(
        [sys.executable, "-c", "import nccid.research; print(nccid.research.open('rita').counts)"],
        capture_output=True, text=True, timeout=300, env={**os.environ, **research_host})
    assert opened.returncode == 0, opened.stderr
    assert "Counts(patients=0, studies=0, images=0)" in opened.stdout


def secret_key(env: dict) -> str:
    shown = subprocess.run(
        [sys.executable, "-c", "from nccid.web import settings; print(settings.SECRET_KEY)"],
        capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert shown.returncode == 0, shown.stderr
    return shown.stdout.strip()


def test_without_the_key_file_each_process_signs_with_a_secret_of_its_own(research_host, home):
    """Nothing a key-less process could sign is trusted elsewhere, and no one can work its
    secret out (a value made from the home's path would let cookies be forged)."""
    first, second = secret_key(research_host), secret_key(research_host)
    assert first != second and str(home) not in first and len(first) >= 50
    assert secret_key({}) == secret_key({})  # with the key: the same in every portal worker


def test_what_needs_the_key_still_refuses_without_it(home, tmp_path):
    no_key = {"NCCID_KEY_FILE": str(tmp_path / "no-key-here" / "secret.key")}
    (tmp_path / "dicom").mkdir()
    numbers = tmp_path / "numbers.csv"
    numbers.write_text("nhs_number\n9990000018\n")
    refusals = [nccid("images", "import", str(tmp_path / "dicom"), "--site", "RTEST", env=no_key),
                nccid("link", str(numbers), "-o", str(tmp_path / "linked.csv"), env=no_key),
                nccid("user", "list", env=no_key), nccid("serve", env=no_key)]
    for refused in refusals:
        assert refused.returncode == 1, refused.stdout
        assert "is missing but this installation already holds data" in refused.stderr
        assert "Traceback" not in refused.stderr, refused.stderr
    assert not (tmp_path / "linked.csv").exists()
