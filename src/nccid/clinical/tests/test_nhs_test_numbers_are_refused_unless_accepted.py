"""NHS numbers of the test range (999 000 0000 onwards) are never a patient's: a live
installation refuses a row carrying one as test data (setting accept_test_numbers, false by
default), naming the row, never the number. Tests, benches and the demo's synthetic people
have such numbers: the test settings accept them, and the demo load always does."""

import pytest

from nccid.clinical import services
from nccid.clinical.models import ClinicalRecord, PatientLink, Upload
from nccid.clinical.validation import TEST_NUMBER_REFUSED
from nccid.identity.models import VaultEntry
from nccid.synthetic.clinical import write_sheet

from .helpers import PEOPLE, positive_row, xlsx_bytes

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


def _sheet() -> bytes:
    headers, row = positive_row(PEOPLE[0], age=50)
    return xlsx_bytes(headers, [row])


def test_a_test_number_is_refused_and_nothing_is_kept(site, make_user, accept_test_numbers):
    accept_test_numbers("false")
    upload = services.preview_upload(site, "positive", "a.xlsx", _sheet(), make_user("uploader", site=site))
    assert upload.status == Upload.Status.REJECTED and upload.rejected_rows == 1
    assert [(e["row"], e["column"], e["value"], e["reason"]) for e in upload.errors] == [
        (2, "NHS/CHI Number", "", TEST_NUMBER_REFUSED)]
    assert TEST_NUMBER_REFUSED == ("is an NHS test number (999 range), not a patient's: this "
                                   "installation refuses test data (setting accept_test_numbers)")
    stored = str(list(Upload.objects.values()))
    assert PEOPLE[0].nhs_number not in stored and PEOPLE[0].hospital_number not in stored
    assert not ClinicalRecord.objects.exists() and not PatientLink.objects.exists()
    assert not VaultEntry.objects.exists()


def test_a_test_number_is_accepted_when_the_setting_says_so(site, make_user, accept_test_numbers):
    accept_test_numbers("true")
    upload = services.preview_upload(site, "positive", "a.xlsx", _sheet(), make_user("uploader", site=site))
    assert upload.status == Upload.Status.PREVIEW and upload.accepted_rows == 1


def test_the_demo_load_can_accept_test_numbers_whatever_the_setting(site, make_user,
                                                                    accept_test_numbers, tmp_path):
    accept_test_numbers("false")
    path = tmp_path / "demo.xlsx"
    write_sheet("positive", PEOPLE[:3], path)
    upload = services.import_file(site, "positive", path, make_user("uploader", site=site),
                                  accept_test_numbers=True)
    assert upload.status == Upload.Status.ACCEPTED and upload.new_records == 3
