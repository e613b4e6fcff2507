"""The audit page's filters refuse an NHS/CHI number (the log names patients by pseudonym
only) with an error that never shows the number back."""

from __future__ import annotations

import pytest
from django.urls import reverse

from nccid.accounts.models import audit
from nccid.synthetic.people import people, spaced

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
NUMBER = people(1, seed=29)[0].nhs_number


@pytest.mark.parametrize("field,typed", [("pseudonym", spaced(NUMBER)), ("pseudonym", NUMBER),
                                         ("user", NUMBER)])
def test_a_patient_number_in_a_filter_is_an_error_and_never_shown_back(client, make_user,
                                                                        field, typed):
    manager = make_user("data-manager", username="dm.filter")
    audit(manager, "vault.reveal", pseudonym="NCCID-AAAAAAAAAAAAAAAA", reason="site query 4")
    client.force_login(manager)
    page = client.get(reverse("figures:audit"), {field: typed})
    body = page.content.decode()
    assert page.status_code == 400
    assert f'id="{field}-error"' in body and "looks like an NHS/CHI number" in body
    assert "<title>Error: Audit log" in body
    assert NUMBER not in body and spaced(NUMBER) not in body
    assert 'id="audit-table"' not in body  # nothing is listed for a refused filter


def test_a_pseudonym_still_filters(client, make_user):
    manager = make_user("data-manager")
    audit(manager, "vault.reveal", pseudonym="NCCID-AAAAAAAAAAAAAAAA", reason="site query 4")
    client.force_login(manager)
    page = client.get(reverse("figures:audit"), {"pseudonym": "NCCID-AAAAAAAAAAAAAAAA"})
    assert page.status_code == 200 and "site query 4" in page.content.decode()
