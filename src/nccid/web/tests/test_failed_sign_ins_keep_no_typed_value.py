"""A failed sign-in's record (django-axes, main database) keeps nothing typed: an NHS number
typed as the username, and a query naming one, are not stored, nor logged; the lock still
counts repeated guesses of one name, and an account's own name is kept so an admin sees it.
Records older than the cool-off go at the next sign-in."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
from axes.models import AccessAttempt
from conftest import TEST_PASSWORD
from django.test import Client
from django.utils import timezone

from nccid.synthetic.people import people

pytestmark = pytest.mark.django_db(databases=["default", "vault"])

PERSON = people(1, seed=41)[0]


def sign_in(client: Client, username: str, password: str, query: str = ""):
    return client.post(f"/login/{query}", {"username": username, "password": password})


def _stored() -> str:
    return json.dumps(list(AccessAttempt.objects.values()), default=str)


def test_a_typed_nhs_number_and_the_query_are_not_stored_nor_logged(caplog):
    caplog.set_level(logging.DEBUG)
    typed = [PERSON.nhs_number, PERSON.hospital_number]
    for number in typed:
        sign_in(Client(), number, "wrong-password", f"?next=/audit/%3Fuser%3D{number}")
    stored = _stored()
    assert AccessAttempt.objects.count() == 2
    for number in typed:
        assert number not in stored and number not in caplog.text
    assert "wrong-password" not in stored
    attempt = AccessAttempt.objects.first()
    assert attempt.username.startswith("unknown-") and "next=" in attempt.get_data


def test_one_unknown_name_guessed_from_many_addresses_is_locked(site):
    for attempt in range(5):
        sign_in(Client(REMOTE_ADDR=f"203.0.113.{attempt}"), PERSON.nhs_number, "wrong-password")
    locked = sign_in(Client(REMOTE_ADDR="198.51.100.7"), PERSON.nhs_number, "wrong-password")
    assert locked.status_code == 429
    assert PERSON.nhs_number not in _stored()


def test_an_accounts_own_name_is_kept_and_its_lock_works(site, make_user):
    user = make_user("uploader", site)
    for attempt in range(5):
        sign_in(Client(REMOTE_ADDR=f"203.0.113.{attempt}"), user.username, "wrong-password")
    assert set(AccessAttempt.objects.values_list("username", flat=True)) == {user.username}
    assert sign_in(Client(REMOTE_ADDR="198.51.100.7"), user.username, TEST_PASSWORD).status_code == 429


def test_records_older_than_the_cool_off_go_at_the_next_sign_in(site, make_user):
    sign_in(Client(), PERSON.nhs_number, "wrong-password")
    AccessAttempt.objects.update(attempt_time=timezone.now() - dt.timedelta(minutes=16))
    user = make_user("uploader", site)
    assert sign_in(Client(REMOTE_ADDR="198.51.100.7"), user.username, TEST_PASSWORD).status_code == 302
    assert not AccessAttempt.objects.exists()
