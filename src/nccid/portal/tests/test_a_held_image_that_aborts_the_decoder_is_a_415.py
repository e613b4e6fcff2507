"""A held image whose JPEG Lossless or JPEG-LS stream aborts GDCM (SIGABRT, which killed the
gunicorn worker and every request on its threads) is answered 415 like any image that cannot
be decoded here; the next preview still works."""

from __future__ import annotations

import pytest
from django.urls import reverse

from nccid.imaging.intake import ingest
from nccid.imaging.models import HeldImage
from nccid.research.tests.hostile_pixels import ABORTING, with_pixels_of
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.mark.parametrize("sample", sorted(ABORTING))
def test_a_held_image_that_aborts_the_decoder_is_a_415(client, site, keyring, make_user, sample):
    person = people(1, seed=6)[0]
    for n, broken in ((1, True), (2, False)):
        ds = synthetic_instance(person, patient_id=person.nhs_number, instance=n)
        ds.BurnedInAnnotation = "YES"
        assert ingest(to_bytes(with_pixels_of(ds, sample, broken)), site, "test").status == "held"
    bad, good = HeldImage.objects.order_by("pk")
    client.force_login(make_user("data-manager"))
    shown = client.get(reverse("figures:review_image", args=[bad.pk]))
    assert shown.status_code == 415
    assert "cannot be shown here (PixelDecodeError" in shown.content.decode()
    assert client.get(reverse("figures:review_image", args=[good.pk])).status_code == 200
