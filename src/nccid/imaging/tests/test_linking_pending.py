"""Pending images are linked when their clinical record arrives, once; expired ones purged."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from typer.testing import CliRunner

from nccid.clinical.signals import AcceptedRecord, records_accepted
from nccid.config import get_settings
from nccid.imaging.intake import ingest
from nccid.imaging.models import PendingImage
from nccid.imaging.outcome import IngestStatus
from nccid.imaging.services import studies_for_site
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse.models import ImageRecord

BOTH = ["default", "vault"]


def _pending(site, person, count: int = 2) -> list[str]:
    outcomes = [ingest(to_bytes(synthetic_instance(person, instance=i, plant=False)), site, "test")
                for i in range(1, count + 1)]
    assert [o.status for o in outcomes] == [IngestStatus.PENDING] * count
    return [o.sop_uid for o in outcomes]


def _accept(site, keyring, person) -> None:
    record = AcceptedRecord(pseudonym=keyring.pseudonym(person.nhs_number),
                            hospital_hash=keyring.hospital_hash(site.code, person.hospital_number),
                            kind="positive", cleaned={})
    records_accepted.send(sender=None, site=site, records=[record], upload_id=1)


@pytest.mark.django_db(databases=BOTH)
def test_pending_images_link_when_the_clinical_record_arrives(site, keyring, person_factory):
    person = person_factory(31)
    sops = _pending(site, person)
    files = list(PendingImage.objects.values_list("file_name", flat=True))
    assert studies_for_site(site).get().status == "pending"
    _accept(site, keyring, person)
    records = ImageRecord.objects.filter(sop_uid__in=sops)
    assert records.count() == 2
    assert {r.pseudonym for r in records} == {keyring.pseudonym(person.nhs_number)}
    assert not PendingImage.objects.exists()
    assert not [f for f in files if (get_settings().pending_dir / f).exists()]
    receipt = studies_for_site(site).get()
    assert (receipt.status, receipt.stored, receipt.pending) == ("stored", 2, 0)
    assert receipt.patient == keyring.pseudonym(person.nhs_number)


@pytest.mark.django_db(databases=BOTH)
def test_images_stored_by_nhs_number_wait_for_the_clinical_record(site, keyring, person_factory):
    person = person_factory(32)
    data = to_bytes(synthetic_instance(person, patient_id=person.nhs_number))
    assert ingest(data, site, "test").status is IngestStatus.STORED
    assert studies_for_site(site).get().status == "waiting"
    _accept(site, keyring, person)
    assert studies_for_site(site).get().status == "stored"


_RACE = """
import sys
from nccid.cli.common import setup_django
setup_django()
from nccid.accounts.models import Site
from nccid.identity.service import get_keyring
from nccid.synthetic.people import people
person = people(37, seed=7)[36]
keyring = get_keyring()
site = Site.objects.get(code="RACE")
hospital_hash = keyring.hospital_hash(site.code, person.hospital_number)
if sys.argv[1] == "pending":
    from nccid.imaging.intake import ingest
    from nccid.synthetic.dicom import synthetic_instance, to_bytes
    for i in range(1, 9):
        ingest(to_bytes(synthetic_instance(person, instance=i, plant=False)), site, "test")
else:
    from nccid.imaging.linking import link_pending
    print(link_pending(site, hospital_hash, keyring.pseudonym(person.nhs_number)).linked)
"""


def test_two_linkers_racing_store_each_pending_image_exactly_once(nccid_home, tmp_path):
    """Two processes link the same patient's pending images at once (a real race on one DB)."""
    import sqlite3
    import subprocess
    import sys

    script = tmp_path / "race.py"
    script.write_text(_RACE)
    nccid = [sys.executable, "-m", "nccid.cli.main"]
    subprocess.run([*nccid, "init"], check=True, capture_output=True, timeout=120)
    subprocess.run([*nccid, "site", "add", "RACE", "--name", "Race Hospital"], check=True,
                   capture_output=True, timeout=60)
    subprocess.run([sys.executable, str(script), "pending"], check=True, timeout=120)
    db = sqlite3.connect(nccid_home / "nccid.sqlite3")
    assert db.execute("select count(*) from imaging_pendingimage").fetchone()[0] == 8
    linkers = [subprocess.Popen([sys.executable, str(script), "link"], stdout=subprocess.PIPE,
                                text=True) for _ in range(2)]
    linked = [int(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in linkers]
    assert sum(linked) == 8
    assert db.execute("select count(*) from warehouse_imagerecord").fetchone()[0] == 8
    assert db.execute("select count(distinct sop_uid) from warehouse_imagerecord").fetchone()[0] == 8
    assert db.execute("select count(*) from imaging_pendingimage").fetchone()[0] == 0
    assert db.execute("select sum(stored), sum(pending) from imaging_studyreceipt").fetchone() == (8, 0)
    assert not list((nccid_home / "pending").glob("*.pending"))


@pytest.mark.django_db(databases=BOTH)
def test_purge_pending_deletes_only_images_past_retention(site, keyring, person_factory):
    old, young = person_factory(34), person_factory(35)
    expired = _pending(site, old)
    kept = _pending(site, young)
    PendingImage.objects.filter(sop_uid__in=expired).update(
        expires_at=timezone.now() - timedelta(days=1))
    files = list(PendingImage.objects.filter(sop_uid__in=expired)
                 .values_list("file_name", flat=True))

    from nccid.cli.main import typer_app

    result = CliRunner().invoke(typer_app, ["images", "purge-pending"])
    assert result.exit_code == 0, result.output
    assert "Purged 2 pending image(s)" in result.output
    assert set(PendingImage.objects.values_list("sop_uid", flat=True)) == set(kept)
    assert not [f for f in files if (get_settings().pending_dir / f).exists()]
    again = CliRunner().invoke(typer_app, ["images", "purge-pending"])
    assert "Purged 0 pending image(s)" in again.output
