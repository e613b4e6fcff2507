"""A batch (32 files of an import, of the node's worker) parses its files before it
de-identifies them: it does so in parts of at most ``intake.PARSED_ELEMENTS`` header elements,
each part de-identified and its headers let go before the next is parsed. A header just under
the element limit takes a few hundred KB of file and ~33 MB parsed: 32 of them in one batch
took the import to 1.4 GB, where the memory target is 500 MB."""

from __future__ import annotations

import weakref

import pytest

from nccid.imaging import intake
from nccid.imaging.importer import import_paths
from nccid.imaging.intake import ingest_many
from nccid.imaging.outcome import IngestStatus

from .conftest import write_study

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _import(site, files) -> list[str]:
    return [IngestStatus.STORED.value] * import_paths(files, site).counts["stored"]


def _ingest_many(site, files) -> list[str]:
    outcomes = ingest_many([path.read_bytes() for path in files], site, "node")
    return [outcome.status.value for outcome in outcomes]


@pytest.mark.parametrize("ingest", [_import, _ingest_many], ids=["import", "node"])
def test_a_batch_holds_the_headers_of_one_part_at_once(site, tmp_path, person_factory,
                                                       monkeypatch, ingest):
    person = person_factory(71)
    files = write_study(tmp_path / "in", person, count=6, patient_id=person.nhs_number)
    one = intake._parsed_count(intake.read_header(files[0].read_bytes()))
    monkeypatch.setattr(intake, "PARSED_ELEMENTS", 2 * one)  # a part: two of these files
    parsed: list[weakref.ref] = []
    alive_at_each_parse: list[int] = []
    real_parse = intake._parse

    def parse(data):
        alive_at_each_parse.append(sum(header() is not None for header in parsed))
        result = real_parse(data)
        parsed.append(weakref.ref(result[0]))
        return result

    monkeypatch.setattr(intake, "_parse", parse)
    assert ingest(site, files) == ["stored"] * 6  # (one batch: all six stored together)
    assert len(alive_at_each_parse) == 6
    # Without parts: [0, 1, 2, 3, 4, 5], every header of the batch held until its end.
    assert alive_at_each_parse == [0, 1, 0, 1, 0, 1]


def test_a_batch_in_parts_gives_each_file_the_outcome_of_one_part(site, keyring, monkeypatch,
                                                                   person_factory, caplog):
    """Duplicates and repeats across parts, waiting and held files, the vault and the log of
    emptied values: what a batch does as a whole, whatever its parts."""
    from nccid.identity.models import VaultEntry
    from nccid.synthetic.dicom import synthetic_instance, to_bytes

    monkeypatch.setattr(intake, "PARSED_ELEMENTS", 1)  # each file a part of its own
    a, b, c = person_factory(72), person_factory(73), person_factory(74)
    a1, a2, a3 = (to_bytes(synthetic_instance(a, modality="CT", instance=i, plant=False,
                                              patient_id=a.nhs_number)) for i in (1, 2, 3))
    off = [synthetic_instance(a, modality="CT", instance=i, plant=False,
                              patient_id=a.nhs_number) for i in (4, 5)]
    for each in off:
        each.BodyPartExamined = "NOT A TERM"  # emptied: one value each, in two parts
    waiting = to_bytes(synthetic_instance(b, plant=False))  # hospital number, no record
    burned = synthetic_instance(c, patient_id=c.nhs_number, plant=False)
    burned.BurnedInAnnotation = "YES"
    assert ingest_many([a1], site, "test")[0].status is IngestStatus.STORED

    batch = [a1, a2, a3, a2, to_bytes(off[0]), waiting, to_bytes(off[1]), to_bytes(burned),
             b"not dicom"]
    with caplog.at_level("INFO", logger="nccid.imaging.intake"):
        outcomes = ingest_many(batch, site, "test")

    S = IngestStatus
    assert [o.status for o in outcomes] == [S.DUPLICATE, S.STORED, S.STORED, S.DUPLICATE,
                                            S.STORED, S.PENDING, S.STORED, S.HELD, S.REJECTED]
    assert VaultEntry.objects.filter(pseudonym__in=[keyring.pseudonym(a.nhs_number),
                                                    keyring.pseudonym(c.nhs_number)]).count() == 2
    emptied = [r.getMessage() for r in caplog.records if "left out of kept" in r.getMessage()]
    assert len(emptied) == 1 and "2 value(s) in 2 file(s)" in emptied[0]  # once a batch
