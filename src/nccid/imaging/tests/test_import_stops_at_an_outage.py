"""An object store or database that stops answering during ``nccid images import`` is one
line naming the setting to check, the import stops and exits 1: the files not stored yet are
not "rejected" (a file each, for an outage that is not theirs), and running the same import
again once the store answers stores them."""

from __future__ import annotations

import socket

import pytest
from django.db import OperationalError

from nccid.cli.tests.clirun import run_cli
from nccid.config import reset_settings_cache
from nccid.imaging.intake import outage_of
from nccid.warehouse.models import ImageRecord
from nccid.warehouse.service import StorageError, get_warehouse

from .conftest import write_study

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _closed_port() -> int:
    with socket.socket() as probe:  # bound, never listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _object_store_down(monkeypatch) -> None:
    """The warehouse on S3 at an endpoint where nothing listens, tried once (no retries)."""
    for name, value in {"STORAGE_URL": "s3://nccid-warehouse/live",
                        "NCCID_S3_ENDPOINT": f"http://127.0.0.1:{_closed_port()}",
                        "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b",
                        "AWS_MAX_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    get_warehouse().fs.retries = 1


def test_an_object_store_down_stops_the_import_with_one_line(
        site, keyring, local_warehouse, monkeypatch, tmp_path, person_factory):
    people = [person_factory(95 + i) for i in range(3)]
    for n, person in enumerate(people):
        write_study(tmp_path / "in" / str(n), person, count=3, patient_id=person.nhs_number)
    first = run_cli(monkeypatch, "images", "import", "--site", site.code, str(tmp_path / "in" / "0"))
    assert first.code == 0, first.err
    local = local_warehouse.url

    with monkeypatch.context() as outage:
        _object_store_down(outage)
        stopped = run_cli(monkeypatch, "images", "import", "--site", site.code,
                          str(tmp_path / "in"))
    assert stopped.code == 1, stopped.out + stopped.err
    assert "rejected:" not in stopped.out  # (not one line a file)
    line = " ".join(stopped.err.split())
    assert line.count("error: the import stopped") == 1, line
    assert "error: the import stopped: the warehouse cannot be written" in line
    assert "check storage_url" in line and "run the same import again" in line
    assert ImageRecord.objects.count() == 3

    monkeypatch.setenv("STORAGE_URL", local)
    reset_settings_cache()
    again = run_cli(monkeypatch, "images", "import", "--site", site.code, str(tmp_path / "in"))
    assert again.code == 0, again.out + again.err
    assert ImageRecord.objects.count() == 9


@pytest.mark.parametrize(("error", "setting"), [
    (OperationalError("connection refused"), "check database_url and vault_database_url"),
    (StorageError("cannot tell whether a key is stored"), "check storage_url"),
    (ValueError("a bug"), ""),
])
def test_what_counts_as_an_outage(error, setting):
    found = outage_of(error)
    assert (setting in found) if setting else found == ""
    assert str(error) not in found  # (a message may quote a value)


def test_a_pending_write_failing_with_no_file_named_names_pending_dir(keyring, monkeypatch,
                                                                      tmp_path):
    """A full disk (ENOSPC) or a failing one (EIO) names no file: the step that failed, the
    write of a waiting image, tells which setting to check. EFBIG under a file-size limit is
    such an error, raised for real by the write, for any user."""
    import dataclasses
    import errno
    import resource
    import signal

    from nccid.config import get_settings
    from nccid.imaging import intake

    settings = dataclasses.replace(get_settings(), pending_dir=tmp_path / "pending")
    monkeypatch.setattr(intake, "get_settings", lambda: settings)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # (its default ends the process)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limits[1]))
    try:
        with pytest.raises(OSError) as failed:
            intake.write_encrypted("1.2.3.pending", bytes(65536), "RTEST", "1.2.3")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert failed.value.errno == errno.EFBIG and failed.value.filename is None
    found = outage_of(failed.value)
    assert "check pending_dir" in found and "File too large" in found, found
    assert "storage_url" not in found
    # (its partial temporary is removed; the folder's marker stays)
    assert [p.name for p in settings.pending_dir.iterdir()] == [intake.MARKER]


def test_an_oserror_while_a_file_is_parsed_is_the_file_s_own_not_an_outage(site, keyring, monkeypatch,
                                                                           person_factory):
    """Parsing works on bytes in memory: an OSError there comes from the file (a hostile one),
    so it must not count as a warehouse outage, which would hold the node's spool for good."""
    from nccid.imaging import intake
    from nccid.synthetic.dicom import synthetic_instance, to_bytes

    def study_of_a_hostile_file(ds, keyring):
        raise OSError("raised while reading this file's own values")

    monkeypatch.setattr(intake, "_study_of", study_of_a_hostile_file)
    person = person_factory(71)
    outcome = intake.ingest(to_bytes(synthetic_instance(person, patient_id=person.nhs_number)),
                            site, "test")
    assert outcome.status == "rejected" and "internal error (OSError)" in outcome.reason
    assert outcome.outage == ""


def test_a_database_away_while_a_file_is_parsed_is_an_outage(site, keyring, monkeypatch,
                                                             person_factory):
    from nccid.imaging import intake
    from nccid.synthetic.dicom import synthetic_instance, to_bytes

    def identify_with_the_vault_away(ds, site, to_vault, links=None):
        raise OperationalError("connection refused")

    monkeypatch.setattr(intake, "identify", identify_with_the_vault_away)
    person = person_factory(72)
    outcome = intake.ingest(to_bytes(synthetic_instance(person, patient_id=person.nhs_number)),
                            site, "test")
    assert "check database_url" in outcome.outage
