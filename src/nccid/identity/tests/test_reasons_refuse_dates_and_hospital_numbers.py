"""A free-text reason (vault reveal, withdrawal, reinstatement, study removal) that seems to
hold a date (of birth or any other) or a hospital number is refused, as one holding an
NHS/CHI number is, with an error that never repeats it; a reveal refused for it is audited
without the reason."""

from __future__ import annotations

from datetime import date

import pytest

from nccid.accounts.models import AuditEvent
from nccid.identity.reasons import MAX_REASON_LENGTH, identifier_in_reason
from nccid.identity.service import (
    ReasonRequired,
    encrypt_for_vault,
    pseudonymise,
    reveal,
    store_in_vault,
)
from nccid.synthetic.people import people, spaced

PERSON = people(1, seed=23)[0]
BORN = PERSON.birth_date
DATE_SPELLINGS = [f"{BORN:%d/%m/%Y}", f"{BORN.day}.{BORN.month}.{BORN:%y}", f"{BORN:%Y-%m-%d}",
                  f"{BORN.day} {BORN:%b %Y}", f"{BORN:%B} {BORN.day}, {BORN.year}",
                  f"{BORN.day}th of {BORN:%B}", f"{BORN:%d-%b-%Y}", f"{BORN:%d %m %Y}",
                  f"{BORN:%B %Y}", f"{BORN:%Y/%m}",
                  # eight digits reading as a date are a date (before: a long number, refused too)
                  f"{BORN:%Y%m%d}", f"{BORN:%d%m%Y}", f"{BORN:%Y %m %d}", f"{BORN:%b %d %Y}".upper(),
                  f"{BORN:%Y-%b-%d}".upper(), f"b.{BORN:%Y-%m-%d}", f"{BORN:%d/%m/%Y}.",
                  f"{BORN:%d–%m–%Y}", f"{BORN:%d}\\{BORN:%m}\\{BORN:%Y}", f"{BORN:%Y/%-m}"]
HOSPITAL_SPELLINGS = [PERSON.hospital_number, PERSON.hospital_number.lower(),
                      f"{PERSON.hospital_number[:2]}-{PERSON.hospital_number[2:]}",
                      "K123456", "A1234B5", "12345678", PERSON.phone,
                      f"{PERSON.hospital_number[2:5]} {PERSON.hospital_number[5:]}"]


@pytest.mark.parametrize("typed", DATE_SPELLINGS)
def test_a_date_in_any_shape_is_refused_without_repeating_it(typed):
    problem = identifier_in_reason(f"Mrs {PERSON.given_name}, DOB {typed}, asked by phone")
    assert problem == "the reason must not contain a date (of birth or any other)"
    assert typed not in problem


# Every month in each shape: "may", "mar", "march", "oct" and "dec" are words as well, and are
# still months beside a year, as an ordinal or written capitalised beside a day.
MONTH_SHAPES = ["{d:%d %B %Y}", "{d:%B} 10th", "10th of {d:%B}", "{d:%B %Y}", "{d:%d %b %y}",
                "{d:%d-%b-%Y}", "{d:%b} 10", "10 {d:%b}", "{d:%B} 10, 1950"]


@pytest.mark.parametrize("month", range(1, 13))
@pytest.mark.parametrize("shape", MONTH_SHAPES)
def test_a_date_with_a_month_name_is_refused_in_every_month(month, shape):
    typed = shape.format(d=date(1950, month, 10))
    assert identifier_in_reason(f"objected, {typed}, by phone") is not None, typed


@pytest.mark.parametrize("month", range(1, 13))
@pytest.mark.parametrize("shape", ["{d:%d %B %Y}", "{d:%B} 10th", "10th of {d:%B}", "{d:%B %Y}",
                                   "{d:%d-%b-%y}"])
def test_a_date_typed_in_lower_case_is_refused_in_every_month(month, shape):
    typed = shape.format(d=date(1950, month, 10)).lower()
    assert identifier_in_reason(f"objected, {typed}, by phone") is not None, typed


def test_the_date_a_request_arrived_is_refused_too():
    assert identifier_in_reason("request received 2026-11-20") is not None


@pytest.mark.parametrize("typed", HOSPITAL_SPELLINGS)
def test_a_hospital_number_or_long_number_is_refused_without_repeating_it(typed):
    problem = identifier_in_reason(f"hosp no {typed} objected")
    assert problem is not None and "hospital number" in problem
    assert typed not in problem


def test_the_reviewers_reason_is_refused():
    reason = (f"Mrs {PERSON.given_name} {PERSON.family_name} (hosp no {PERSON.hospital_number}, "
              f"DOB {BORN:%d/%m/%Y}) asked by phone")
    assert identifier_in_reason(reason) is not None


def test_an_nhs_number_keeps_its_own_message():
    problem = identifier_in_reason(f"pt {spaced(PERSON.nhs_number)}")
    assert problem == "the reason must not contain an NHS/CHI number"


@pytest.mark.parametrize("reason", [
    "patient objected", "site query 4521", "ticket 12345", "query Q1234", "covid-19 study",
    "name burned into the image", "3 images, 12 series sent in error", "the patient may object",
    "duplicate of NCCID-ABCDEFGH23456723", "NCCID-2345672345672345 sent twice", "march on",
    # a number before a month name that is an ordinary word ("may", "mar", "oct", "dec")
    "Series 2 may contain burned-in text", "Images 1-3 may show the face",
    "2 may be duplicates of study 1", "CT with 3 mar artefacts", "Bilateral GGO; 3 may progress",
    "3 MAR artefacts", "2 OCT scans sent in error", "3 dec lung volumes", "the 2nd may show text",
    # numbers that are no date: a code before a fraction, a sentence's full stop
    "query 5 - 3/12 ago", "series 38. May be duplicates",
])
def test_an_ordinary_reason_is_kept(reason):
    assert identifier_in_reason(reason) is None


def test_a_reason_too_long_to_check_is_refused():
    assert identifier_in_reason("x" * MAX_REASON_LENGTH) is None
    assert identifier_in_reason("x" * (MAX_REASON_LENGTH + 1)) == \
        f"the reason must be at most {MAX_REASON_LENGTH} characters"


@pytest.mark.django_db(databases=["default", "vault"])
@pytest.mark.parametrize("typed", [f"{BORN:%d/%m/%Y}", PERSON.hospital_number])
def test_a_reveal_with_a_date_or_hospital_number_is_refused_and_the_reason_not_kept(
        keyring, make_user, typed):
    pseudonym, digits = pseudonymise(PERSON.nhs_number)
    store_in_vault({pseudonym: encrypt_for_vault(pseudonym, digits)})
    with pytest.raises(ReasonRequired, match="must not contain") as refused:
        reveal(make_user("data-manager"), pseudonym, f"asked by phone, {typed}")
    assert typed not in str(refused.value)
    [denied] = AuditEvent.objects.filter(action="vault.reveal.denied")
    assert typed not in denied.reason + str(denied.detail)
    assert not AuditEvent.objects.filter(action="vault.reveal").exists()
