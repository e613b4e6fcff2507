"""Upload, preview, confirm and cancel through the portal pages, and site isolation."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models.signals import pre_save

from nccid.synthetic.clinical import write_sheet
from nccid.synthetic.people import people

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def sheet(tmp_path, kind="positive", count=4, errors=0, seed=2, name=None):
    path = tmp_path / (name or f"{kind}-{errors}.xlsx")
    planted = write_sheet(kind, people(count, seed=seed), path, errors=errors, seed=seed)
    return SimpleUploadedFile(path.name, path.read_bytes()), planted


def upload(client, kind, file, **extra):
    return client.post(f"/upload/{kind}/", {"file": file, **extra})


def records():
    from nccid.clinical.models import ClinicalRecord

    return ClinicalRecord.objects.count()


@pytest.fixture
def uploader(client, site, make_user):
    user = make_user("uploader", site)
    client.force_login(user)
    return user


def test_upload_redirects_to_a_preview_listing_every_error(client, uploader, tmp_path):
    file, planted = sheet(tmp_path, errors=2)
    response = upload(client, "positive", file)
    assert response.status_code == 302 and "/uploads/" in response["Location"]
    page = client.get(response["Location"])
    body = page.content.decode()
    assert "Check your upload" in body and "There is a problem with this file" in body
    for row, header in planted:
        assert f'<td class="nhsuk-table__cell">{row}</td>' in body
        assert header in body
    facts = page.context["facts"]
    assert facts["n_rejected"] == 2 and facts["n_accepted"] == 2 and facts["n_new"] == 2
    assert records() == 0  # nothing saved before confirmation
    csv = client.get(response["Location"] + "errors.csv")
    assert csv["Content-Type"].startswith("text/csv")
    assert len(csv.content.decode().strip().splitlines()) == 1 + len(planted)


def test_confirm_twice_imports_once(client, uploader, tmp_path):
    file, _ = sheet(tmp_path, count=5)
    preview_url = upload(client, "positive", file)["Location"]
    confirm_url = preview_url + "confirm/"
    first = client.post(confirm_url, follow=True)
    assert "Upload accepted: 5 new" in first.content.decode()
    assert records() == 5
    second = client.post(confirm_url, follow=True)
    assert "already accepted" in second.content.decode()
    assert records() == 5
    from nccid.clinical.models import Upload

    assert Upload.objects.get().new_records == 5


def test_uploading_the_same_sheet_again_changes_nothing(client, uploader, tmp_path):
    file, _ = sheet(tmp_path, count=3)
    client.post(upload(client, "positive", file)["Location"] + "confirm/")
    again, _ = sheet(tmp_path, count=3, name="again.xlsx")
    page = client.get(upload(client, "positive", again)["Location"])
    assert page.context["facts"]["n_unchanged"] == 3 and page.context["facts"]["n_new"] == 0


def test_cancel_saves_nothing_and_cannot_then_be_confirmed(client, uploader, tmp_path):
    file, _ = sheet(tmp_path)
    preview_url = upload(client, "positive", file)["Location"]
    assert client.post(preview_url + "cancel/").status_code == 302
    after = client.post(preview_url + "confirm/", follow=True)
    assert "cannot be confirmed" in after.content.decode()
    assert records() == 0


def test_an_import_failing_half_way_leaves_nothing_behind(client, uploader, tmp_path):
    """The database fails after the records are written (injected at the audit row written in
    the same transaction): the records are rolled back and the upload can be confirmed later."""
    from django.db import IntegrityError

    from nccid.accounts.models import AuditEvent
    from nccid.clinical.models import Upload

    file, _ = sheet(tmp_path, count=5)
    preview_url = upload(client, "positive", file)["Location"]

    def fail_after_records(sender, instance, **kwargs):
        if instance.action == "clinical.upload.confirm":
            assert records() == 5  # the failure really is half-way
            raise IntegrityError("disk full (injected)")

    pre_save.connect(fail_after_records, sender=AuditEvent)
    try:
        page = client.post(preview_url + "confirm/", follow=True)
    finally:
        pre_save.disconnect(fail_after_records, sender=AuditEvent)
    body = page.content.decode()
    assert "could not be imported and nothing was saved" in body
    assert records() == 0
    assert Upload.objects.get().status == "preview"
    # Once the fault is gone, confirming works.
    client.post(preview_url + "confirm/")
    assert records() == 5


def test_a_file_of_another_kind_is_flagged_with_a_link_to_the_right_page(client, uploader, tmp_path):
    file, _ = sheet(tmp_path, kind="negative")
    page = client.get(upload(client, "positive", file)["Location"])
    body = page.content.decode()
    assert page.context["facts"]["detected_kind"] == "negative"
    assert "This looks like the negative template" in body and 'href="/upload/negative/"' in body
    assert "Confirm and import" not in body


def test_a_file_that_is_not_a_spreadsheet_is_refused_with_a_clear_error(client, uploader):
    bad = SimpleUploadedFile("notes.txt", b"hello")
    response = upload(client, "positive", bad)
    assert response.status_code == 400
    assert "must be an Excel workbook (.xlsx) or a CSV file" in response.content.decode()
    corrupt = SimpleUploadedFile("broken.xlsx", b"PK\x03\x04 not really a workbook")
    page = client.get(upload(client, "positive", corrupt)["Location"])
    assert "Upload rejected" in page.content.decode() and records() == 0


def test_missing_file_shows_the_error_summary(client, uploader):
    response = client.post("/upload/isaric/", {})
    body = response.content.decode()
    assert response.status_code == 400
    assert "There is a problem" in body and "Select the spreadsheet to upload" in body


def test_a_user_of_another_site_can_never_see_or_act_on_an_upload(client, site, other_site, make_user, tmp_path):
    owner = make_user("uploader", site)
    client.force_login(owner)
    file, _ = sheet(tmp_path, errors=1)
    preview_url = upload(client, "positive", file)["Location"]
    client.force_login(make_user("uploader", other_site))
    for url in (preview_url, preview_url + "errors.csv"):
        assert client.get(url).status_code == 404
    for url in (preview_url + "confirm/", preview_url + "cancel/"):
        assert client.post(url).status_code == 404
    body = client.get("/uploads/").content.decode()
    assert preview_url not in body and other_site.name in body
    assert client.get(f"/uploads/?site={site.code}").context["site"] == other_site  # param ignored
    assert records() == 0
    from nccid.clinical.models import Upload

    assert Upload.objects.get().status == "preview"


def test_researchers_and_data_managers_cannot_confirm(client, site, make_user, tmp_path):
    client.force_login(make_user("uploader", site))
    file, _ = sheet(tmp_path)
    preview_url = upload(client, "positive", file)["Location"]
    client.force_login(make_user("researcher"))
    assert client.get(preview_url).status_code == 404
    client.force_login(make_user("data-manager"))
    assert client.get(preview_url).status_code == 200           # may look, across sites
    assert client.post(preview_url + "confirm/").status_code == 403  # told: it is no secret
    assert records() == 0


def test_an_admin_uploads_for_a_chosen_site(client, site, make_user, tmp_path):
    client.force_login(make_user("admin"))
    file, _ = sheet(tmp_path, count=2)
    response = upload(client, "positive", file, site=site.code)
    client.post(response["Location"] + "confirm/")
    from nccid.clinical.models import ClinicalRecord

    assert set(ClinicalRecord.objects.values_list("site__code", flat=True)) == {site.code}
    listing = client.get(f"/uploads/?site={site.code}").content.decode()
    assert "Accepted" in listing


def test_my_uploads_lists_studies_without_identifiers(client, uploader, site):
    from django.utils import timezone

    from nccid.imaging.models import StudyReceipt

    now = timezone.now()
    StudyReceipt.objects.create(site=site, study_uid="2.25.1", patient="NCCID-ABCDEFGHJKMNPQRS",
                                modality="DX", source="node", instances=2, first_received=now,
                                last_received=now, status="waiting")
    body = client.get("/uploads/").content.decode()
    assert "NCCID-ABCDEFGHJKMNPQRS" in body and "Waiting for clinical record" in body
    assert "2.25.1" not in body


def test_my_uploads_shows_files_refused_after_receipt_and_why(client, uploader, site):
    from django.utils import timezone

    from nccid.imaging.models import StudyReceipt

    now = timezone.now()
    StudyReceipt.objects.create(site=site, study_uid="2.25.2", patient="", modality="CT",
                                source="node", instances=3, rejected=3, first_received=now,
                                last_received=now, status="rejected",
                                problem="no Patient ID and no NHS/CHI number in Other Patient IDs")
    body = client.get("/uploads/").content.decode()
    assert "Rejected" in body
    assert "3: no Patient ID and no NHS/CHI number in Other Patient IDs" in body


def test_a_data_manager_is_asked_to_choose_a_site_before_any_is_shown(client, site, make_user):
    client.force_login(make_user("data-manager"))
    body = client.get("/uploads/").content.decode()
    assert '<option value="" selected disabled>Choose a site</option>' in body
    assert "Choose a site above to see" in body and 'id="upload-table"' not in body
    chosen = client.get(f"/uploads/?site={site.code}").content.decode()
    assert "Choose a site</option>" not in chosen
    assert f'<option value="{site.code}" selected>' in chosen


def receipts(site, count: int, status: str = "stored", start: int = 0) -> None:
    """``count`` study receipts, one a minute, the newest last."""
    from datetime import timedelta

    from django.utils import timezone

    from nccid.imaging.models import StudyReceipt

    now = timezone.now()
    StudyReceipt.objects.bulk_create(
        StudyReceipt(site=site, study_uid=f"2.25.{start + n}", patient=f"NCCID-P{start + n:015d}",
                     modality="DX", source="node", instances=1,
                     first_received=now + timedelta(minutes=start + n),
                     last_received=now + timedelta(minutes=start + n), status=status)
        for n in range(count))


def study_patients(body: str) -> list[str]:
    import re

    table = body[body.index('id="study-table"'):body.index("</table>", body.index('id="study-table"'))]
    return re.findall(r"NCCID-P\d{15}", table)


def test_my_uploads_shows_studies_fifty_a_page_newest_first(client, uploader, site):
    receipts(site, 120)
    first = client.get("/uploads/").content.decode()
    assert study_patients(first) == [f"NCCID-P{n:015d}" for n in range(119, 69, -1)]
    assert "Studies 1 to 50 of 120" in first
    assert 'href="?page=3" aria-label="Page 3"' in first
    last = client.get("/uploads/?page=3").content.decode()
    assert study_patients(last) == [f"NCCID-P{n:015d}" for n in range(19, -1, -1)]
    assert client.get("/uploads/?page=banana").status_code == 200  # a bad number: page 1


def own_records(site, count: int, start: int = 0) -> None:
    """The site's own clinical records of the patients ``receipts`` names (a site is shown a
    study stored only once its own record names the patient)."""
    from nccid.clinical.models import ClinicalRecord, Upload

    upload = Upload.objects.create(site=site, kind="positive", sha256="0" * 64, status="accepted")
    ClinicalRecord.objects.bulk_create(
        ClinicalRecord(site=site, pseudonym=f"NCCID-P{start + n:015d}", kind="positive",
                       digest="0" * 64, last_upload=upload)
        for n in range(count))


def test_my_uploads_filters_studies_by_status_with_counts(client, uploader, site):
    receipts(site, 3, "stored")
    own_records(site, 3)
    receipts(site, 2, "waiting", start=10)
    body = client.get("/uploads/").content.decode()
    assert '<strong aria-current="true">All (5)</strong>' in body
    assert 'href="?status=waiting">Waiting for clinical record (2)</a>' in body
    assert "Held for review" not in body  # no study has it: no link to an empty list
    waiting = client.get("/uploads/?status=waiting").content.decode()
    assert study_patients(waiting) == ["NCCID-P000000000000011", "NCCID-P000000000000010"]
    assert '<strong aria-current="true">Waiting for clinical record (2)</strong>' in waiting
    assert len(study_patients(client.get("/uploads/?status=nonsense").content.decode())) == 5


def test_a_data_managers_site_and_filter_survive_paging(client, site, make_user):
    client.force_login(make_user("data-manager"))
    receipts(site, 60, "waiting")
    body = client.get(f"/uploads/?site={site.code}&status=waiting").content.decode()
    assert f'href="?site={site.code}&amp;status=waiting&amp;page=2"' in body
    assert f'<a href="?site={site.code}&amp;">All (60)</a>' in body  # back to all, same site
    page_two = client.get(f"/uploads/?site={site.code}&status=waiting&page=2").content.decode()
    assert len(study_patients(page_two)) == 10


def test_a_sheet_with_a_problem_in_every_row_is_summarised_not_listed_whole(client, uploader,
                                                                             site):
    from nccid.clinical.models import Upload

    problems = [{"row": r, "column": "Date of Positive Covid Swab", "value": "31/02/2020",
                 "severity": "error", "reason": "not a date"} for r in range(2, 1002)]
    problems += [{"row": r, "column": "Age", "value": "130", "severity": "warning",
                  "reason": "outside 0-120"} for r in range(5, 8)]
    upload = Upload.objects.create(site=site, kind="positive", sha256="0" * 64, status="rejected",
                                   total_rows=1000, rejected_rows=1000, errors=problems)
    body = client.get(f"/uploads/{upload.pk}/").content.decode()
    listed = body[body.index('id="error-table"'):]
    assert listed.count('<tr class="nhsuk-table__row">') == 1 + 200  # the header row and 200
    assert "The first 200 of 1003 problems." in body
    groups = body[body.index('id="problem-groups"'):body.index('id="error-table"')]
    assert groups.index("Not a date") < groups.index("Outside 0-120")  # errors first
    assert ">1000</td>" in groups and ">2, 3, 4</td>" in groups and ">5, 6, 7</td>" in groups
    csv_rows = client.get(f"/uploads/{upload.pk}/errors.csv").content.decode().splitlines()
    assert len(csv_rows) == 1 + 1003  # the CSV keeps every problem


def test_a_few_problems_are_listed_without_a_summary(client, uploader, tmp_path):
    file, planted = sheet(tmp_path, errors=2)
    body = client.get(upload(client, "positive", file)["Location"]).content.decode()
    assert 'id="error-table"' in body
    assert 'id="problem-groups"' not in body and 'id="problems-truncated"' not in body
