"""A first import's records and links are inserted by one statement per table on SQLite,
prepared once and run for every row: statements of 90 rows (SQLite's 999 parameters) cost
more to build, convert and parse than to run, about 0.1 s of the bench's 20,000 records.
Links already known are still kept as they are (ON CONFLICT DO NOTHING)."""

import pytest
from django.db import connection

from nccid.clinical import services
from nccid.clinical.models import ClinicalRecord, PatientLink
from nccid.synthetic.people import people

from .helpers import sheet_of

pytestmark = pytest.mark.django_db(databases=["default", "vault"])
PATIENTS = people(120, seed=9)


def _inserts(statements: list, table: str) -> list[bool]:
    """Of the INSERTs into ``table``: whether each ran once per row (executemany)."""
    return [many for sql, many in statements if sql.startswith(f'INSERT INTO "{table}"')]


def test_records_and_links_are_inserted_by_one_statement_each(site, make_user):
    user = make_user("uploader", site=site)
    upload = services.preview_upload(site, "positive", "a.xlsx", sheet_of(
        "positive", [{"age": 40 + n % 50} for n in range(len(PATIENTS))], PATIENTS), user)
    statements = []

    def record(execute, sql, params, many, context):
        statements.append((sql, many))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        services.confirm_upload(upload, user)
    # PostgreSQL copies the rows in (COPY), the links through a scratch table, all on the
    # driver's own cursor: no INSERT of either passes Django's (one per row would).
    expected = ([True], [True]) if connection.vendor == "sqlite" else ([], [])
    assert (_inserts(statements, ClinicalRecord._meta.db_table),
            _inserts(statements, PatientLink._meta.db_table)) == expected
    assert ClinicalRecord.objects.count() == PatientLink.objects.count() == len(PATIENTS)


def test_links_already_known_are_kept(site, make_user, keyring):
    user = make_user("uploader", site=site)
    first = PATIENTS[:3]
    services.confirm_upload(services.preview_upload(site, "positive", "a.xlsx", sheet_of(
        "positive", [{"age": 50}] * 3, first), user), user)
    links = dict(PatientLink.objects.values_list("hospital_hash", "pseudonym"))
    services.confirm_upload(services.preview_upload(site, "positive", "b.xlsx", sheet_of(
        "positive", [{"age": 51}] * 5, PATIENTS[:5]), user), user)
    after = dict(PatientLink.objects.values_list("hospital_hash", "pseudonym"))
    assert len(after) == 5 and all(after[h] == p for h, p in links.items())
    assert after == {keyring.hospital_hash(site.code, p.hospital_number): keyring.pseudonym(p.nhs_number)
                     for p in PATIENTS[:5]}
