"""A mistyped site (``--site RTES``) or modality (``--modality XR``, ``X-RAY``) matched no one
and was audited as a query, an empty cohort a researcher could take for a finding. A site no
record of the catalogue is from, and a modality code that neither the DICOM standard defines
nor an image holds, are refused naming what the catalogue holds, by Python, the API and the
command line. A code the standard defines (PT) or an image holds (a vendor's own) is still a
question with an honest answer, possibly none."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nccid.accounts.models import AuditEvent
from nccid.modalities import dicom_modality_codes
from nccid.research import api
from nccid.research import cli as research_cli
from nccid.research.cohort import CohortError, CohortFilter, select_cohort

pytestmark = pytest.mark.django_db


def count(researcher, world, data: dict) -> int:
    cohort = select_cohort(researcher, CohortFilter.from_dict(data), world.source())
    try:
        return cohort.counts().patients
    finally:
        cohort.close()


@pytest.mark.parametrize("typed", ["RTES", "RTEST1", "R TEST"])
def test_a_site_no_record_is_from_is_refused_naming_the_sites(world, researcher, typed):
    with pytest.raises(CohortError, match=rf"^site '{typed.upper()}': no record in the catalogue "
                                          r"is from such a site; sites: OTHER, RTEST$"):
        count(researcher, world, {"site": ["RTEST", typed]})
    assert not AuditEvent.objects.filter(action="research.cohort").exists()


@pytest.mark.parametrize("typed", ["XR", "X-RAY", "CTX", " ct scan"])
def test_a_modality_neither_the_standard_nor_an_image_holds_is_refused(world, researcher, typed):
    with pytest.raises(CohortError) as raised:
        count(researcher, world, {"modality": ["CT", typed]})
    assert str(raised.value) == (
        f"modality {typed.strip().upper()!r}: not a DICOM modality code, nor one an image in the "
        "catalogue holds; use a code (held: CT, DX) or a folder (xray, ct, mri, other)")


def test_sites_codes_and_folders_held_still_answer_in_any_case(world, researcher):
    assert count(researcher, world, {"site": ["rtest"]}) == count(researcher, world,
                                                                  {"site": ["RTEST"]}) > 0
    assert count(researcher, world, {"modality": ["dx", "xray", "ct"]}) > 0


def test_a_code_the_standard_defines_with_no_image_yet_gives_an_empty_cohort(world, researcher):
    assert "PT" in dicom_modality_codes() and "US" in dicom_modality_codes()
    assert count(researcher, world, {"modality": ["PT", "US"]}) == 0


def test_a_code_only_an_image_holds_is_taken(tmp_path, researcher, monkeypatch):
    """A vendor's own or a retired code (DR) is not in the standard's list: the catalogue
    holding it makes it a code to ask for."""
    from nccid.research import cohort as module

    assert "DR" not in dicom_modality_codes()
    monkeypatch.setattr(module, "_held", lambda con, sql: {"DR", "CT"})
    flt = CohortFilter.from_dict({"modality": ["DR"]})
    module.check_named_codes(flt, None)  # no refusal
    with pytest.raises(CohortError, match="held: CT, DR"):
        module.check_named_codes(CohortFilter.from_dict({"modality": ["DRX"]}), None)


@pytest.mark.parametrize(("body", "said"), [
    ({"site": "RTES"}, "site 'RTES': no record in the catalogue is from such a site"),
    ({"modality": ["XR"]}, "modality 'XR': not a DICOM modality code"),
])
def test_the_api_answers_400_and_audits_nothing(ask, world, monkeypatch, body, said):
    monkeypatch.setattr(api, "source_factory", world.source)
    answer = ask(body)
    assert answer.status_code == 400, answer.content
    assert said in answer.json()["detail"]
    assert not AuditEvent.objects.filter(action="research.cohort").exists()


@pytest.mark.django_db(databases=["default", "vault"])
@pytest.mark.parametrize(("args", "said"), [
    (["--site", "RTES"], "site 'RTES': no record in the catalogue is from such a site; "
                         "sites: OTHER, RTEST"),
    (["--modality", "X-RAY"], "modality 'X-RAY': not a DICOM modality code"),
])
def test_the_command_line_refuses_in_one_line(world, researcher, monkeypatch, args, said):
    from nccid.cli.common import UserError
    from nccid.cli.main import typer_app

    monkeypatch.setattr(research_cli, "_source", world.source)
    result = CliRunner().invoke(typer_app, ["research", "cohort", "--user", "rita", *args])
    assert isinstance(result.exception, UserError), result.output
    assert said in str(result.exception) and "\n" not in str(result.exception)
    assert not AuditEvent.objects.filter(action="research.cohort").exists()
