"""A relink gives stored image rows another patient in place, which adds no row and deletes
none: the portal's summary, kept incrementally by row ids, must still count it at once (served
"Patients with images" stayed one too high until a deletion or an hour's recount), and a
misfiled relink, whose old patient then has no image left, too."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nccid.imaging.linking import link_known
from nccid.synthetic.people import people

from .. import relink as relinking
from .conftest import send_images, send_sheet

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
REASON = "NHS number typo in the site's sheet"


def _served_and_recounted():
    from nccid.portal import summary

    served, counted = summary.get_summary(max_age=0), summary.recount()
    return replace(served, version=()), replace(counted, version=())


@pytest.fixture(autouse=True)
def fresh_figures():
    from nccid.portal import summary

    summary.forget()
    yield
    summary.forget()


def test_the_summary_counts_a_relink_at_once(typo, site, manager):
    real, right, wrong = typo
    before, _ = _served_and_recounted()  # the figures counted, and saved, before the relink

    relinking.relink(manager, site.code, real.hospital_number, real.nhs_number, REASON)

    served, counted = _served_and_recounted()
    assert served == counted
    # the typo patient keeps a clinical record, but no image any more
    assert served.patients_with_images == before.patients_with_images - 1
    assert served.total_patients == before.total_patients


@pytest.fixture
def misfiled(site, make_user, keyring, local_warehouse):
    """The site's hospital number passes the NHS/CHI check; its images, sent before the sheet,
    went under that number read as an NHS number, a patient nothing else names."""
    real, as_number = people(2, seed=43)
    real = replace(real, hospital_number=as_number.nhs_number)
    assert {o.status for o in send_images(site, real, study=1, by_nhs_number=False)} == {"stored"}
    send_sheet(site, make_user("uploader", site), [real])
    link_known()
    assert {o.status for o in send_images(site, real, study=2, by_nhs_number=False)} == {"stored"}
    return real


def test_the_summary_counts_a_misfiled_relink_at_once(misfiled, site, manager):
    before, _ = _served_and_recounted()

    done = relinking.relink(manager, site.code, misfiled.hospital_number, misfiled.nhs_number,
                            REASON)

    assert done.forgotten
    served, counted = _served_and_recounted()
    assert served == counted
    assert (served.patients_with_images, served.total_patients) == (
        before.patients_with_images - 1, before.total_patients - 1)


def test_the_dashboard_sees_a_relink_as_a_change_of_the_data(typo, site, manager):
    """The dashboard recomputes when its data version changes (at most once a minute): a
    relink must change it, or its figures would keep the old patient until other data came."""
    from nccid.portal import charts

    real, right, wrong = typo
    before = charts._version_key()

    relinking.relink(manager, site.code, real.hospital_number, real.nhs_number, REASON)

    assert charts._version_key() != before
