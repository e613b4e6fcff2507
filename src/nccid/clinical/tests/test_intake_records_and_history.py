"""Preview, confirm, re-upload and cancel through the services, on the real databases."""

import pytest

from nccid.clinical import services
from nccid.clinical.models import (
    ClinicalRecord,
    ClinicalRecordVersion,
    PatientLink,
    Upload,
    history,
)
from nccid.clinical.signals import records_accepted
from nccid.identity.models import VaultEntry

from .helpers import PEOPLE, sheet_of

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def positive_sheet(ages: list, people_list=None) -> bytes:
    return sheet_of("positive", [{"age": a, "sex": 1, "crp": 10} for a in ages], people_list or PEOPLE)


def preview(site, data, user, kind="positive"):
    return services.preview_upload(site, kind, "Testperson-sheet.xlsx", data, user)


def test_preview_then_confirm_creates_records_links_and_vault_entries(site, make_user, keyring):
    user = make_user("uploader", site=site)
    upload = preview(site, positive_sheet([50, 60, "x"]), user)
    assert upload.status == "preview" and (upload.total_rows, upload.accepted_rows, upload.rejected_rows) == (3, 2, 1)
    assert upload.new_records == 2 and ClinicalRecord.objects.count() == 0  # nothing written yet
    assert upload.errors[0]["row"] == 4 and upload.errors[0]["column"] == "Age"
    upload = services.confirm_upload(upload, user)
    assert upload.status == "accepted" and upload.confirmed_at is not None and upload.staged is None
    record = ClinicalRecord.objects.get(pseudonym=keyring.pseudonym(PEOPLE[0].nhs_number))
    assert record.cleaned["age"] == 50 and record.data["age"] == 50 and record.last_upload == upload
    assert "nhs_number" not in record.data and "hospital_number" not in record.data
    hospital_hash = keyring.hospital_hash(site.code, PEOPLE[0].hospital_number)
    assert services.pseudonym_for_hospital_number(site, hospital_hash) == record.pseudonym
    assert PatientLink.objects.count() == 2
    assert set(VaultEntry.objects.values_list("pseudonym", flat=True)) == {
        keyring.pseudonym(p.nhs_number) for p in PEOPLE[:2]}


def test_reupload_updates_never_duplicates_and_keeps_history(site, make_user, keyring):
    user = make_user("uploader", site=site)
    first = services.confirm_upload(preview(site, positive_sheet([50, 60]), user), user)
    second = services.confirm_upload(preview(site, positive_sheet([51, 60, 70]), user), user)
    assert (second.new_records, second.updated_records, second.unchanged_records) == (1, 1, 1)
    assert ClinicalRecord.objects.count() == 3
    record = ClinicalRecord.objects.get(pseudonym=keyring.pseudonym(PEOPLE[0].nhs_number))
    states = history(record)
    assert [s["upload_id"] for s in states] == [first.pk, second.pk]
    assert [s["cleaned"]["age"] for s in states] == [50, 51]
    unchanged = ClinicalRecord.objects.get(pseudonym=keyring.pseudonym(PEOPLE[1].nhs_number))
    assert unchanged.last_upload == first and unchanged.versions.count() == 0


def test_same_patient_at_two_sites_gets_one_pseudonym_and_two_records(site, other_site, make_user):
    user = make_user("admin")
    services.import_file  # noqa: B018 - the function the CLI uses is covered in the CLI test
    for where in (site, other_site):
        services.confirm_upload(preview(where, positive_sheet([50]), user), user)
    assert ClinicalRecord.objects.count() == 2
    assert ClinicalRecord.objects.values("pseudonym").distinct().count() == 1


def test_confirming_twice_imports_once(site, make_user):
    user = make_user("uploader", site=site)
    upload = preview(site, positive_sheet([50, 60]), user)
    stale_copy = Upload.objects.get(pk=upload.pk)
    services.confirm_upload(upload, user)
    again = services.confirm_upload(stale_copy, user)
    assert again.status == "accepted" and again.new_records == 2
    assert ClinicalRecord.objects.count() == 2 and ClinicalRecordVersion.objects.count() == 0


def test_cancelled_upload_cannot_be_confirmed(site, make_user):
    user = make_user("uploader", site=site)
    upload = services.cancel_upload(preview(site, positive_sheet([50]), user), user)
    assert upload.status == "cancelled" and upload.staged is None
    with pytest.raises(services.UploadStateError, match="is cancelled"):
        services.confirm_upload(upload, user)
    assert ClinicalRecord.objects.count() == 0


def test_failure_mid_import_leaves_nothing_half_written(site, make_user, monkeypatch):
    user = make_user("uploader", site=site)
    upload = preview(site, positive_sheet([50, 60]), user)

    def broken_link(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(services, "_link", broken_link)
    with pytest.raises(RuntimeError):
        services.confirm_upload(upload, user)
    assert Upload.objects.get(pk=upload.pk).status == "preview"
    assert ClinicalRecord.objects.count() == 0 and PatientLink.objects.count() == 0
    monkeypatch.undo()
    done = services.confirm_upload(Upload.objects.get(pk=upload.pk), user)
    assert done.status == "accepted" and ClinicalRecord.objects.count() == 2


def test_records_accepted_is_sent_after_commit(site, make_user, monkeypatch, django_capture_on_commit_callbacks):
    user = make_user("uploader", site=site)
    monkeypatch.setattr(records_accepted, "receivers", [])  # only this test's receiver
    monkeypatch.setattr(records_accepted, "sender_receivers_cache", {})
    received = []

    def receiver(sender, site, records, upload_id, **kwargs):
        received.append((site.code, upload_id, records))

    records_accepted.connect(receiver, weak=False)
    upload = preview(site, positive_sheet([50]), user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.confirm_upload(upload, user)
    assert received == [] and len(callbacks) == 1  # nothing before the commit
    callbacks[0]()
    (code, upload_id, records), = received
    assert (code, upload_id) == (site.code, upload.pk)
    assert records[0].kind == "positive" and records[0].cleaned["age"] == 50
    assert records[0].pseudonym.startswith("NCCID-") and records[0].hospital_hash.startswith("H-")


def test_rejected_file_writes_nothing_but_the_refusal(site, make_user):
    user = make_user("uploader", site=site)
    upload = preview(site, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20, user)
    assert upload.status == "rejected" and "not a spreadsheet" in upload.message
    assert upload.staged is None and ClinicalRecord.objects.count() == 0
    with pytest.raises(services.UploadStateError):
        services.confirm_upload(upload, user)


def test_a_sheet_where_every_row_fails_is_rejected(site, make_user):
    upload = preview(site, positive_sheet(["x", "y"]), make_user("uploader", site=site))
    assert upload.status == "rejected" and upload.rejected_rows == 2 and upload.error_count == 2


def test_negative_reuploads_add_swabs_to_the_same_record(site, make_user):
    user = make_user("uploader", site=site)
    person = PEOPLE[0]
    first = sheet_of("negative", [{"swab_date": "2020-04-01", "swab_status": 0}], [person])
    later = sheet_of("negative", [{"swab_date": "2020-04-01", "swab_status": 0},
                                  {"swab_date": "2020-04-10", "swab_status": 1}], [person, person])
    services.confirm_upload(preview(site, first, user, "negative"), user)
    upload = services.confirm_upload(preview(site, later, user, "negative"), user)
    assert upload.updated_records == 1 and ClinicalRecord.objects.filter(kind="negative").count() == 1
    cleaned = ClinicalRecord.objects.get(kind="negative").cleaned
    assert [s["status"] for s in cleaned["swabs"]] == ["Negative", "Positive"]
    assert cleaned["any_positive_swab"] is True and cleaned["latest_swab_date"] == "2020-04-10"


def test_uploads_for_site_and_errors_as_csv(site, other_site, make_user):
    user = make_user("admin")
    mine = preview(site, sheet_of("positive", [{"age": 50}, {"age": "-old"}]), user)
    preview(other_site, positive_sheet([50]), user)
    assert [u.pk for u in services.uploads_for_site(site)] == [mine.pk]
    text = services.errors_as_csv(mine)
    assert text.splitlines()[0] == "row,column,value,severity,reason"
    assert "3,Age,'-old,error,'-old' is not a number" in text  # a formula never runs in Excel


def test_original_filename_is_not_stored(site, make_user):
    upload = preview(site, positive_sheet([50]), make_user("uploader", site=site))
    stored = repr(Upload.objects.filter(pk=upload.pk).values().get())
    assert "Testperson" not in stored


def test_reupload_of_a_record_stored_with_an_older_digest_encoding_is_unchanged(site, make_user):
    # Records written before the JSON encoder change hold digests of ASCII-escaped JSON.
    import hashlib
    import json

    user = make_user("uploader", site=site)
    sheet = sheet_of("positive", [{"age": 50, "hospital": "Hôpital Saint-Étienne"}], PEOPLE)
    services.confirm_upload(preview(site, sheet, user), user)
    record = ClinicalRecord.objects.get()
    texts = [json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)
             for v in (record.data, record.cleaned, record.flags)]
    legacy = hashlib.sha256("\x1f".join([record.hospital_hash, *texts]).encode()).hexdigest()
    assert legacy != record.digest  # the escaped form really differs for this content
    ClinicalRecord.objects.filter(pk=record.pk).update(digest=legacy)
    again = services.confirm_upload(preview(site, sheet, user), user)
    assert (again.new_records, again.updated_records, again.unchanged_records) == (0, 0, 1)
    assert ClinicalRecordVersion.objects.count() == 0


def test_errors_csv_cells_that_a_spreadsheet_would_run_are_quoted():
    from nccid.clinical.services import _safe

    assert [_safe(v) for v in ("=1+1", "+1", "-1", "@A1", "\t=1", "\r=1", "fine", None)] == [
        "'=1+1", "'+1", "'-1", "'@A1", "'\t=1", "'\r=1", "fine", ""]
