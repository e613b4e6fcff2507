"""A warehouse that is missing (an unmounted folder, a wrong bucket) or unreachable (S3 down)
never reads as an empty one: cohorts, exports, verify and refresh raise a clear StorageError
instead of answering "0 patients" with exit status 0, and the API answers 503 saying the
warehouse cannot be reached (not a 500)."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from nccid.cli.common import UserError
from nccid.cli.main import typer_app
from nccid.config import reset_settings_cache
from nccid.research.cohort import CohortFilter, select_cohort
from nccid.research.export import export_cohort
from nccid.warehouse.catalogue import catalogue_counts, refresh_catalogue
from nccid.warehouse.models import ImageRecord
from nccid.warehouse.service import StorageError, get_warehouse, store_image, verify_objects

pytestmark = pytest.mark.django_db(databases=["default", "vault"])  # the CLI checks the key

@pytest.fixture
def researcher(make_user):
    return make_user("researcher")


NO_CATALOGUE = "has no catalogue although 3 images are catalogued: is the store mounted/reachable?"


def _catalogued_warehouse(site, make_image) -> None:
    for instance in (1, 2, 3):
        store_image(site, *make_image(instance, "DX", instance=instance))
    assert refresh_catalogue()["images"] == 3


def _point_at(monkeypatch, url: str, endpoint: str | None = None) -> None:
    monkeypatch.setenv("STORAGE_URL", url)
    if endpoint:
        monkeypatch.setenv("NCCID_S3_ENDPOINT", endpoint)
    reset_settings_cache()


def _every_reader_refuses(researcher, tmp_path, match: str) -> None:
    with pytest.raises(StorageError, match=match):
        select_cohort(researcher, CohortFilter())
    with pytest.raises(StorageError, match=match):
        export_cohort(researcher, CohortFilter(), tmp_path / "export")
    with pytest.raises(StorageError, match=match):
        verify_objects(None)
    with pytest.raises(StorageError, match=match):
        catalogue_counts()


def test_an_empty_folder_where_the_warehouse_should_be_is_refused(
        site, local_warehouse, make_image, researcher, tmp_path, monkeypatch):
    _catalogued_warehouse(site, make_image)
    empty = tmp_path / "unmounted"
    empty.mkdir()
    _point_at(monkeypatch, str(empty))
    _every_reader_refuses(researcher, tmp_path, NO_CATALOGUE)
    with pytest.raises(StorageError, match=NO_CATALOGUE):
        refresh_catalogue()
    assert sorted(p.name for p in empty.iterdir()) == []  # a refresh wrote nothing there


def test_the_api_says_the_warehouse_cannot_be_reached(
        site, local_warehouse, make_image, researcher, tmp_path, monkeypatch, client, caplog):
    _catalogued_warehouse(site, make_image)
    _point_at(monkeypatch, str(tmp_path / "unmounted"))
    client.force_login(researcher)

    api = client.post("/api/research/cohort/count", {}, content_type="application/json")
    assert (api.status_code, api["Retry-After"]) == (503, "300")
    assert api.json() == {"detail": "The image warehouse cannot be reached; try again later."}

    assert "has no catalogue although 3 images" in caplog.text  # the reason: in the log only


def test_verify_on_an_empty_folder_fails_with_one_line(site, local_warehouse, make_image, tmp_path,
                                                       monkeypatch):
    _catalogued_warehouse(site, make_image)
    _point_at(monkeypatch, str(tmp_path / "unmounted"))
    result = CliRunner().invoke(typer_app, ["warehouse", "verify", "--all"])
    assert isinstance(result.exception, UserError)  # main() shows it as one line, exit 1
    assert NO_CATALOGUE in str(result.exception)
    assert "checked" not in result.output


def test_verify_fails_when_the_catalogue_lists_fewer_images_than_the_database(
        site, local_warehouse, make_image):
    _catalogued_warehouse(site, make_image)
    ImageRecord.objects.update(catalogue_part=1)  # as if the store held an older catalogue
    store_image(site, *make_image(4, "DX", instance=4))
    ImageRecord.objects.filter(catalogue_part=None).update(catalogue_part=2)
    report = verify_objects(None)
    assert (report.in_catalogue, report.in_database, report.ok) == (3, 4, False)
    result = CliRunner().invoke(typer_app, ["warehouse", "verify", "--all"])
    assert result.exit_code == 1
    assert "the catalogue lists 3 image(s) but the database has 4 catalogued" in \
        " ".join(result.output.split())


@pytest.mark.s3
def test_a_wrong_bucket_is_refused(site, s3_server, monkeypatch, make_image, researcher, tmp_path):
    _point_at(monkeypatch, f"s3://{s3_server.make_bucket('wh')}/nccid", s3_server.endpoint_url)
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    get_warehouse().ensure()
    _catalogued_warehouse(site, make_image)
    _point_at(monkeypatch, "s3://no-such-bucket-here/nccid")
    _every_reader_refuses(researcher, tmp_path, NO_CATALOGUE)


def _closed_port() -> int:
    with socket.socket() as probe:  # bound, never listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.s3
def test_s3_that_does_not_answer_is_an_error_not_a_missing_object(
        site, s3_server, monkeypatch, make_image, researcher, tmp_path):
    bucket = s3_server.make_bucket("wh")
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    _point_at(monkeypatch, f"s3://{bucket}/nccid")
    get_warehouse().ensure()
    _catalogued_warehouse(site, make_image)
    version = catalogue_counts()["version"]

    # Give up at once (no retries): the server is down for good here.
    config = tmp_path / "nccid.toml"
    config.write_text("[storage_options.config_kwargs.retries]\nmax_attempts = 1\n")
    monkeypatch.setenv("NCCID_CONFIG", str(config))
    _point_at(monkeypatch, f"s3://{bucket}/nccid", f"http://127.0.0.1:{_closed_port()}")
    get_warehouse().fs.retries = 1
    with pytest.raises(StorageError, match="cannot tell whether 'catalogue/state.json' is stored"):
        get_warehouse().exists("catalogue/state.json")
    with pytest.raises(StorageError, match="cannot tell whether"):
        select_cohort(researcher, CohortFilter())
    with pytest.raises(StorageError, match="cannot (tell whether|reach or create bucket|list)"):
        refresh_catalogue()

    monkeypatch.delenv("NCCID_CONFIG")
    _point_at(monkeypatch, f"s3://{bucket}/nccid", s3_server.endpoint_url)
    assert catalogue_counts()["version"] == version  # the catalogue did not restart at 1
