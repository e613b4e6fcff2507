"""Each patient is in exactly one set, decided once by the site's rule, and never moved."""

from __future__ import annotations

import pytest

from nccid.synthetic.people import people
from nccid.warehouse.models import PatientSet
from nccid.warehouse.service import assign_set, assign_sets
from nccid.warehouse.split import choose_set


def test_choose_set_rules():
    assert choose_set("training", 0.01, 50) == "training"
    assert choose_set("validation", 0.99, 50) == "validation"
    assert choose_set("split", 0.19, 20) == "validation"
    assert choose_set("split", 0.20, 20) == "training"
    assert choose_set("split", 0.0, 0) == "training"
    assert choose_set("split", 0.999, 100) == "validation"


@pytest.mark.parametrize(("args", "message"), [
    (("sometimes", 0.5, 20), "unknown split rule"),
    (("split", 1.0, 20), "split fraction"),
    (("split", -0.1, 20), "split fraction"),
    (("split", 0.5, 101), "between 0 and 100"),
])
def test_choose_set_refuses_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        choose_set(*args)


@pytest.fixture
def pseudonyms(keyring):
    return [keyring.pseudonym(p.nhs_number) for p in people(400, seed=3)]


def test_split_follows_the_keyed_fraction(site, keyring, pseudonyms):
    sets = assign_sets(site, pseudonyms, validation_percent=30)
    for p in pseudonyms:
        assert sets[p] == ("validation" if keyring.split_fraction(p) < 0.30 else "training")
    share = sum(s == "validation" for s in sets.values()) / len(sets)
    assert 0.2 < share < 0.4


def test_changing_the_percentage_never_moves_an_existing_patient(site, pseudonyms):
    first = {p: assign_set(site, p, validation_percent=20) for p in pseudonyms[:200]}
    later = {p: assign_set(site, p, validation_percent=80) for p in pseudonyms}
    assert {p: later[p] for p in first} == first
    # New patients follow the new percentage.
    new_share = sum(later[p] == "validation" for p in pseudonyms[200:]) / 200
    assert new_share > 0.6


def test_changing_the_configured_percentage_never_moves_anyone(site, pseudonyms, monkeypatch):
    from nccid.config import get_settings, reset_settings_cache

    before = assign_sets(site, pseudonyms[:100])
    monkeypatch.setenv("NCCID_VALIDATION_PERCENT", "95")
    reset_settings_cache()
    try:
        assert get_settings().validation_percent == 95
        after = assign_sets(site, pseudonyms)
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    assert {p: after[p] for p in before} == before
    assert sum(after[p] == "validation" for p in pseudonyms[100:]) > 250


def test_site_rules_and_first_site_wins(site, other_site, pseudonyms):
    site.split_rule = "validation"
    site.save()
    other_site.split_rule = "training"
    other_site.save()
    for p in pseudonyms[:50]:
        assert assign_set(site, p) == "validation"
    for p in pseudonyms[:50]:  # seen first at the validation site: stays there
        assert assign_set(other_site, p) == "validation"
    for p in pseudonyms[50:100]:
        assert assign_set(other_site, p) == "training"
    assert PatientSet.objects.filter(pseudonym__in=pseudonyms[:50], site=site).count() == 50


def test_a_patient_is_never_in_both_sets(site, other_site, pseudonyms):
    other_site.split_rule = "validation"
    other_site.save()
    for p in pseudonyms[:100]:
        assign_set(site, p, validation_percent=50)
        assign_set(other_site, p, validation_percent=0)
        assign_set(site, p, validation_percent=100)
    assert PatientSet.objects.count() == 100
    rows = PatientSet.objects.values_list("pseudonym", "set_name")
    assert len({p for p, _ in rows}) == 100


def test_a_decision_stored_by_another_writer_stands(site, other_site, pseudonyms):
    """Two writers deciding the same new patients: the first stored decision stands for both."""
    other_site.split_rule = "validation"
    other_site.save()
    batch = pseudonyms[:30]
    # The other site's writer stored its decision for half of them a moment earlier.
    PatientSet.objects.bulk_create([PatientSet(pseudonym=p, set_name="validation", site=other_site)
                                    for p in batch[::2]])
    sets = assign_sets(site, batch, validation_percent=0)
    assert all(sets[p] == "validation" for p in batch[::2])
    assert all(sets[p] == "training" for p in batch[1::2])
    assert PatientSet.objects.filter(pseudonym__in=batch).count() == 30
