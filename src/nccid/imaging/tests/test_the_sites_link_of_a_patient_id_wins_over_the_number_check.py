"""Which patient an image is: the site's link of its Patient ID first (a hospital number
can pass the NHS/CHI check: 1 in 14 ten-digit ones, 1 in 45 nine-digit ones), then an
NHS/CHI number, the one in Other Patient IDs before a Patient ID that merely passes the
check unless Issuer of Patient ID names the number; an "NHS"/"CHI" label before the number
is read. The link is asked once per Patient ID in a batch."""

from __future__ import annotations

from dataclasses import replace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pydicom.dataset import Dataset

from nccid.identity.models import VaultEntry
from nccid.imaging.intake import ingest, ingest_many
from nccid.imaging.models import PendingImage
from nccid.imaging.outcome import IngestStatus
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import nhs_test_numbers, people
from nccid.warehouse.models import ImageRecord

from .sheets import record_and_link

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

# Hospital numbers that pass the NHS check (synthetic: from the 999 test range).
NUMERIC_HOSPITAL_NUMBERS = nhs_test_numbers(8, start=700_000)


def _person(index: int, hospital_number: str | None = None):
    person = people(index + 1, seed=7)[index]
    return replace(person, hospital_number=hospital_number or NUMERIC_HOSPITAL_NUMBERS[index % 8])


def _image(person, *, instance: int = 1, other_ids=None, other_sequence=None, issuer=None,
           patient_id=None) -> bytes:
    ds = synthetic_instance(person, instance=instance, plant=False, patient_id=patient_id)
    if other_ids is not None:
        ds.OtherPatientIDs = other_ids
    if other_sequence is not None:
        items = []
        for value, item_issuer in other_sequence:
            item = Dataset()
            item.PatientID = value
            if item_issuer:
                item.IssuerOfPatientID = item_issuer
            items.append(item)
        ds.OtherPatientIDsSequence = items
    if issuer is not None:
        ds.IssuerOfPatientID = issuer
    return to_bytes(ds)


def _stored_under(keyring, outcome) -> str:
    assert outcome.status is IngestStatus.STORED, outcome.reason
    return ImageRecord.objects.get(sop_uid=outcome.sop_uid).pseudonym


@pytest.mark.parametrize("other_ids", [None, "nhs"], ids=["patient-id-only", "nhs-in-other-ids"])
def test_a_linked_hospital_number_that_passes_the_nhs_check_is_its_linked_patient(
        site, keyring, other_ids):
    person = _person(1)
    pseudonym, _, _ = record_and_link(site, keyring, person)

    outcome = ingest(_image(person, other_ids=person.nhs_number if other_ids else None),
                     site, "test")

    assert _stored_under(keyring, outcome) == pseudonym
    assert ImageRecord.objects.get(sop_uid=outcome.sop_uid).linked
    phantom = keyring.pseudonym(person.hospital_number)
    assert not VaultEntry.objects.filter(pseudonym=phantom).exists()  # never kept as an NHS number


def test_the_link_wins_over_another_number_in_other_patient_ids_too(site, keyring):
    person = _person(2)
    pseudonym, _, _ = record_and_link(site, keyring, person)
    stranger = nhs_test_numbers(1, start=710_000)[0]

    outcome = ingest(_image(person, other_ids=stranger), site, "test")

    assert _stored_under(keyring, outcome) == pseudonym


@pytest.mark.parametrize("where", ["other-ids", "other-ids-sequence"])
def test_an_unlinked_patient_id_passing_the_check_yields_to_the_number_in_other_ids(
        site, keyring, where):
    person = _person(3)  # no sheet yet: the hospital number is linked to no one
    image = (_image(person, other_ids=person.nhs_number) if where == "other-ids"
             else _image(person, other_sequence=[(person.nhs_number, None)]))

    outcome = ingest(image, site, "test")

    assert _stored_under(keyring, outcome) == keyring.pseudonym(person.nhs_number)
    assert not VaultEntry.objects.filter(
        pseudonym=keyring.pseudonym(person.hospital_number)).exists()


@pytest.mark.parametrize("issuer", ["NHS", "nhs number", "NHSN", "2.16.840.1.113883.2.1.4.1"])
def test_an_issuer_naming_the_nhs_number_makes_patient_id_the_number(site, keyring, issuer):
    person = _person(4)
    other = nhs_test_numbers(1, start=720_000)[0]  # e.g. an older number kept as an other ID

    outcome = ingest(_image(person, other_ids=other, issuer=issuer), site, "test")

    assert _stored_under(keyring, outcome) == keyring.pseudonym(person.hospital_number)


def test_an_issuer_naming_a_trust_is_no_hint_but_a_sequence_items_issuer_is(site, keyring):
    person = _person(5)
    other = nhs_test_numbers(1, start=730_000)[0]
    trust = _image(person, instance=1, other_ids=other, issuer="Royal Test NHS Trust")
    named = _image(person, instance=2, other_ids=other,
                   other_sequence=[(person.nhs_number, "NHS")])

    first, second = ingest(trust, site, "test"), ingest(named, site, "test")

    assert _stored_under(keyring, first) == keyring.pseudonym(other)
    assert _stored_under(keyring, second) == keyring.pseudonym(person.nhs_number)


@pytest.mark.parametrize("spelling", ["NHS{n}", "NHS: {spaced}", "nhs no. {dashed}",
                                      "NHS Number {n}", "NHSNo:{n}", "CHI {n}"])
def test_a_patient_id_labelled_nhs_or_chi_is_read_as_the_number(site, keyring, spelling):
    person = _person(6)
    n = person.nhs_number
    patient_id = spelling.format(n=n, spaced=f"{n[:3]} {n[3:6]} {n[6:]}",
                                 dashed=f"{n[:3]}-{n[3:6]}-{n[6:]}")

    outcome = ingest(_image(person, patient_id=patient_id), site, "test")

    assert _stored_under(keyring, outcome) == keyring.pseudonym(n)


@pytest.mark.parametrize("patient_id", ["NHS 1234567890", "NHSX{n}", "{n}NHS"])
def test_a_label_before_no_valid_number_stays_a_hospital_number(site, keyring, patient_id):
    person = _person(7)

    outcome = ingest(_image(person, patient_id=patient_id.format(n=person.nhs_number)),
                     site, "test")

    assert outcome.status is IngestStatus.PENDING
    assert PendingImage.objects.get().hospital_hash == keyring.hospital_hash(
        site.code, patient_id.format(n=person.nhs_number))


def test_a_batch_asks_the_sites_link_once_per_patient_id(site, keyring):
    linked = [_person(i) for i in (10, 11, 12)]  # by hospital number (passing the check or not)
    linked[2] = replace(linked[2], hospital_number="RT0012345")
    by_nhs = _person(13)
    for person in linked:
        record_and_link(site, keyring, person)
    files = [_image(p, instance=i) for p in linked for i in (1, 2, 3)]
    files += [_image(by_nhs, instance=i, patient_id=by_nhs.nhs_number) for i in (1, 2, 3)]

    with CaptureQueriesContext(connection) as queries:
        outcomes = ingest_many(files, site, "import")

    assert {o.status for o in outcomes} == {IngestStatus.STORED}
    asked = [q for q in queries.captured_queries if "clinical_patientlink" in q["sql"]]
    assert len(asked) == 4  # one per distinct Patient ID, not one per file
