"""Withdrawing a patient or removing a study ends on a page of its own (POST, then a redirect
to a GET of the result): reloading it, or coming Back to it, runs nothing again, audits
nothing again and shows the same counts, the ones stored with the withdrawal."""

from __future__ import annotations

import pytest
from django.urls import reverse

from nccid.accounts.models import AuditEvent
from nccid.imaging.intake import ingest_many
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.synthetic.people import people
from nccid.warehouse.models import ImageRecord
from nccid.withdrawal.models import StudyWithdrawal, Withdrawal

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def patient(site, keyring, local_warehouse):
    """A patient with two studies of two images each."""
    person = people(1, seed=44)[0]
    outcomes = ingest_many([to_bytes(synthetic_instance(person, patient_id=person.nhs_number,
                                                        study=study, instance=i))
                            for study in (1, 2) for i in (1, 2)], site, "test")
    assert {o.status for o in outcomes} == {"stored"}
    return person, keyring.pseudonym(person.nhs_number)


def inset(body: str, element_id: str) -> str:
    return body.split(f'id="{element_id}"', 1)[1].split("</div>", 1)[0]


def _sent_to_its_result(client, make_user, page_name: str, form: dict, model):
    """A data manager's POST of ``form``: (the redirect, the record it made, the audit count)."""
    client.force_login(make_user("data-manager"))
    page = reverse(page_name)
    sent = client.post(page, form)
    made = model.objects.get()
    assert sent.status_code == 302 and sent["Location"] == f"{page}?done={made.pk}"
    return sent, made, AuditEvent.objects.count()


def test_reloading_a_withdrawal_result_withdraws_nothing_again(client, make_user, patient):
    person, pseudonym = patient
    sent, withdrawal, events = _sent_to_its_result(
        client, make_user, "figures:withdraw",
        {"patient": pseudonym, "step": "withdraw", "reason": "Objected (ref 5)"}, Withdrawal)
    shown = []
    for _ in range(2):  # the redirect, then a reload
        result = client.get(sent["Location"])
        assert result.status_code == 200 and "no-store" in result["Cache-Control"]
        shown.append(inset(result.content.decode(), "withdrawn"))
    assert shown[0] == shown[1]
    assert pseudonym in shown[0] and "has been withdrawn" in shown[0]
    assert f"Removed {withdrawal.removed['images']} images" in shown[0]
    assert withdrawal.removed["images"] == 4
    assert person.nhs_number not in shown[0]
    assert AuditEvent.objects.count() == events  # nothing withdrawn or looked up again
    assert not AuditEvent.objects.filter(action__startswith="patient.withdraw.again").exists()


def test_reloading_a_study_removal_result_removes_nothing_again(client, make_user, patient):
    _, pseudonym = patient
    study_uid = ImageRecord.objects.filter(pseudonym=pseudonym).values_list("study_uid", flat=True)[0]
    sent, _, events = _sent_to_its_result(
        client, make_user, "figures:remove_study",
        {"study": study_uid, "step": "remove", "reason": "Name burned in"}, StudyWithdrawal)
    shown = [inset(client.get(sent["Location"]).content.decode(), "removed") for _ in range(2)]
    assert shown[0] == shown[1] and study_uid in shown[0] and "2 images" in shown[0]
    assert AuditEvent.objects.count() == events
    assert ImageRecord.objects.filter(pseudonym=pseudonym).count() == 2  # the other study stays


def test_a_result_address_for_nothing_completed_shows_the_find_form(client, make_user):
    client.force_login(make_user("data-manager"))
    for page in (reverse("figures:withdraw"), reverse("figures:remove_study")):
        for done in ("999", "x", "1" * 30):
            answer = client.get(f"{page}?done={done}")
            assert answer.status_code == 200 and answer.context["step"] == "find"


def test_the_result_still_lists_the_research_hand_outs_found_before_the_data_went(
        client, make_user, patient):
    from nccid.accounts.models import audit

    _, pseudonym = patient
    from nccid.warehouse.models import PatientSet

    # (the patient's set follows the session's key: the export is of whichever it is)
    patient_set = PatientSet.objects.get(pseudonym=pseudonym).set_name
    audit("researcher7", "research.export", sets=[patient_set])
    client.force_login(make_user("data-manager"))
    page = reverse("figures:withdraw")
    confirm = client.post(page, {"patient": pseudonym}).content.decode()
    assert "researcher7" in inset(confirm, "handed-out")
    sent = client.post(page, {"patient": pseudonym, "step": "withdraw", "reason": "Objected"})
    for _ in range(2):
        body = client.get(sent["Location"]).content.decode()
        assert "Tell the researchers listed below" in body
        assert "researcher7" in body.split('id="handed-out"', 1)[1].split("</table>", 1)[0]
