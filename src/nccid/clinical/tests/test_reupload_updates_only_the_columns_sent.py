"""A re-upload changes, field by field, only what its sheet has columns for: a follow-up sheet of
a few columns must not wipe what earlier uploads stored, and a blank cell in a column it has
clears that field (and the preview says how many were cleared)."""

import json

import pytest

from nccid.clinical import services
from nccid.clinical.models import ClinicalRecord
from nccid.clinical.schema import get_template
from nccid.warehouse import layout
from nccid.warehouse.models import PatientSet

from .helpers import PEOPLE, sheet_of, xlsx_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def header(kind: str, field: str) -> str:
    return get_template(kind).field(field).header


def upload(site, user, kind: str, data: bytes):
    return services.confirm_upload(services.preview_upload(site, kind, "a.xlsx", data, user), user)


def stored(keyring, person=PEOPLE[0], kind="positive") -> ClinicalRecord:
    return ClinicalRecord.objects.get(pseudonym=keyring.pseudonym(person.nhs_number), kind=kind)


def test_a_sheet_of_fewer_columns_keeps_the_fields_it_lacks(site, make_user, keyring, local_warehouse,
                                                            django_capture_on_commit_callbacks):
    user = make_user("uploader", site=site)
    upload(site, user, "positive", sheet_of("positive", [{"age": 50, "sex": 1, "crp": "100 mg/dL"}]))
    follow_up = xlsx_bytes([header("positive", "nhs_number"), header("positive", "death")],
                           [[PEOPLE[0].nhs_number, 1]])
    preview = services.preview_upload(site, "positive", "b.xlsx", follow_up, user)
    assert preview.updated_records == 1 and not any("cleared" in w for w in preview.sheet_warnings)
    with django_capture_on_commit_callbacks(execute=True):
        services.confirm_upload(preview, user)
    record = stored(keyring)
    assert record.data["age"] == 50 and record.data["sex"] == "1" and record.data["death"] == "1"
    assert record.data["crp"] == 100  # as typed (in mg/dL) ...
    assert record.cleaned["crp"] == 1000  # ... and its cleaned value converted when it was read
    assert record.cleaned["age"] == 50 and record.cleaned["sex"] == "Male"
    assert record.cleaned["death"] == "Yes"
    assert record.hospital_hash == keyring.hospital_hash(site.code, PEOPLE[0].hospital_number)
    set_name = PatientSet.objects.get(pseudonym=record.pseudonym).set_name
    key = layout.clinical_key(set_name, record.pseudonym, "positive", site.code)
    assert json.loads(local_warehouse.read(key)) == record.cleaned  # the warehouse has the merge


def test_a_blank_cell_in_a_column_sent_clears_the_stored_value(site, make_user, keyring):
    user = make_user("uploader", site=site)
    upload(site, user, "positive", sheet_of("positive", [{"age": 50, "sex": 1, "crp": 10},
                                                          {"age": 60, "sex": 1, "crp": 20}]))
    correction = xlsx_bytes(
        [header("positive", "nhs_number"), header("positive", "crp"), header("positive", "sex")],
        [[PEOPLE[0].nhs_number, None, None], [PEOPLE[1].nhs_number, None, 0]])
    preview = services.preview_upload(site, "positive", "b.xlsx", correction, user)
    (warning,) = [w for w in preview.sheet_warnings if "cleared" in w]
    assert warning.startswith("blank cells cleared 3 stored values of 2 patients")
    confirmed = services.confirm_upload(preview, user)
    assert [w for w in confirmed.sheet_warnings if "cleared" in w] == [warning]  # not twice
    first, second = stored(keyring, PEOPLE[0]), stored(keyring, PEOPLE[1])
    assert "crp" not in first.data and "sex" not in first.data and first.data["age"] == 50
    assert first.cleaned["crp"] is None and first.cleaned["sex"] is None and first.cleaned["age"] == 50
    assert "crp" not in second.data and second.cleaned["sex"] == "Female" and second.cleaned["age"] == 60


def test_a_field_flagged_earlier_keeps_its_flag_only_while_its_value_is_kept(site, make_user, keyring):
    user = make_user("uploader", site=site)
    upload(site, user, "positive", sheet_of("positive", [{"age": 150, "crp": 10}]))
    assert stored(keyring).flags == ["age"]
    upload(site, user, "positive", xlsx_bytes([header("positive", "nhs_number"), header("positive", "crp")],
                                              [[PEOPLE[0].nhs_number, 12]]))
    assert stored(keyring).flags == ["age"] and stored(keyring).cleaned["crp"] == 12
    upload(site, user, "positive", xlsx_bytes([header("positive", "nhs_number"), header("positive", "age")],
                                              [[PEOPLE[0].nhs_number, 70]]))
    assert stored(keyring).flags == [] and stored(keyring).cleaned["age"] == 70


def test_the_same_values_again_in_fewer_columns_change_nothing(site, make_user, keyring):
    user = make_user("uploader", site=site)
    upload(site, user, "positive", sheet_of("positive", [{"age": 50, "crp": 10}]))
    again = upload(site, user, "positive", xlsx_bytes(
        [header("positive", "nhs_number"), header("positive", "age")], [[PEOPLE[0].nhs_number, 50]]))
    assert (again.updated_records, again.unchanged_records) == (0, 1)
    assert stored(keyring).versions.count() == 0


ISARIC_FULL = {"age": 55, "sex": 1, "chronic_cardiac_disease": 1, "respiratory_rate": 25, "spo2": 95,
               "gcs": 15, "urea": 10, "crp": 60}  # 4C: 2 + 1 + 1 + 1 + 0 + 0 + 1 + 1 = 7


def test_an_isaric_reupload_of_one_input_recomputes_the_4c_score(site, make_user, keyring):
    user = make_user("uploader", site=site)
    upload(site, user, "isaric", sheet_of("isaric", [{**ISARIC_FULL, "isaric_4c_score_supplied": 7}]))
    record = stored(keyring, kind="isaric")
    assert record.cleaned["isaric_4c_score"] == 7 and record.flags == []
    upload(site, user, "isaric", xlsx_bytes([header("isaric", "nhs_number"), header("isaric", "age")],
                                            [[PEOPLE[0].nhs_number, 85]]))
    record = stored(keyring, kind="isaric")
    assert record.cleaned["age"] == 85 and record.cleaned["respiratory_rate"] == 25
    assert record.cleaned["isaric_4c_score"] == 12  # age 85: 7 points instead of 2
    assert record.flags == ["isaric_4c_score_supplied"]  # the supplied 7 no longer matches
