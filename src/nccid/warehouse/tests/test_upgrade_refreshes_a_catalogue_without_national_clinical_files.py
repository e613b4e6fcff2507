"""A catalogue refreshed by a release before 13f43f5 has no ``national`` clinical column, which
research exports need. Research hosts cannot refresh it (no key file), so ``nccid init`` on the
main host, the documented upgrade step, refreshes it; until then an export says who can."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from nccid.cli.main import typer_app
from nccid.research.cohort import CohortFilter
from nccid.research.export import ExportError, export_cohort
from nccid.warehouse.catalogue import STATE_KEY, refresh_catalogue
from nccid.warehouse.upgrade import upgrade_warehouse

pytestmark = pytest.mark.django_db(databases=["default", "vault"])


@pytest.fixture
def old_catalogue(site, backend, make_image, keyring):
    """One positive record and its image, catalogued as releases before 13f43f5 did: the clinical
    table without ``national`` (the state names it with its checksum, as the old refresh wrote)."""
    from nccid.clinical.models import ClinicalRecord, Upload
    from nccid.identity.service import encrypt_for_vault, store_in_vault
    from nccid.synthetic.people import people
    from nccid.warehouse.service import store_image

    site.split_rule = "training"
    site.save()
    pseudonym, data, meta = make_image(3)
    store_image(site, pseudonym, data, meta)
    store_in_vault({pseudonym: encrypt_for_vault(pseudonym, people(50, seed=7)[3].nhs_number)})
    upload = Upload.objects.create(site=site, kind="positive", sha256="1" * 64)
    ClinicalRecord.objects.create(site=site, pseudonym=pseudonym, kind="positive",
                                  cleaned={"date_of_positive_covid_swab": "2020-11-06", "age": 63},
                                  digest="d", last_upload=upload)
    refresh_catalogue()
    state = json.loads(backend.read(STATE_KEY))
    entry = state["files"]["clinical"][0]
    key = f"catalogue/{entry['key']}"
    table = pq.read_table(io.BytesIO(backend.read(key))).drop_columns(["national"])
    out = io.BytesIO()
    pq.write_table(table, out)
    entry["sha256"] = backend.write_atomic(key, out.getvalue())
    backend.write_atomic(STATE_KEY, json.dumps(state).encode())
    return pseudonym


def test_init_refreshes_the_catalogue_and_the_export_then_works(
        old_catalogue, make_user, tmp_path):
    researcher = make_user("researcher")
    with pytest.raises(ExportError, match="on a research host ask the data manager"):
        export_cohort(researcher, CohortFilter(), tmp_path / "before", ("csv", "dicom"))

    init = CliRunner().invoke(typer_app, ["init"])
    assert init.exit_code == 0, init.output
    assert "Refreshed the catalogue" in init.output

    export_cohort(researcher, CohortFilter(), tmp_path / "after", ("csv", "dicom"))
    files = list((tmp_path / "after" / "training" / "data" / old_catalogue).iterdir())
    assert [f.name.split("_")[0] for f in files] == ["data"]
    assert not upgrade_warehouse().catalogue_refreshed  # now current: only read


def test_an_export_on_a_stale_catalogue_is_refused_before_copying_any_image(
        old_catalogue, make_user, tmp_path):
    copied = []
    with pytest.raises(ExportError, match="predates the national clinical files"):
        export_cohort(make_user("researcher"), CohortFilter(), tmp_path / "out", ("csv", "dicom"),
                      progress=lambda done, total: copied.append(done))
    assert copied == [] and not (tmp_path / "out").exists()
