"""The guidance page and the FAQ tell a site the host name to send images to, never the node's
listen address when that is a wildcard (``node_host = "0.0.0.0"``, the production example, was
shown as "Host 0.0.0.0" and in the echoscu line): ``node_public_host`` if set, else the host of
``public_url``, else ``node_host`` when it names one address, else the host this page was
requested by."""

from __future__ import annotations

import pytest

import nccid.config

pytestmark = pytest.mark.django_db


@pytest.fixture
def node_settings(monkeypatch):
    """Set NCCID_ variables for this test; the session's settings come back afterwards."""
    def setting(**values: str) -> None:
        for name in ("NCCID_NODE_PUBLIC_HOST", "NCCID_PUBLIC_URL", "PUBLIC_URL"):
            monkeypatch.delenv(name, raising=False)
        for name, value in values.items():
            monkeypatch.setenv(f"NCCID_{name.upper()}", value)
        nccid.config.reset_settings_cache()

    yield setting
    monkeypatch.undo()
    nccid.config.reset_settings_cache()


@pytest.fixture
def uploader_client(client, site, make_user):
    client.force_login(make_user("uploader", site))
    return client


def _page(client, path: str = "/guidance/", **headers) -> str:
    response = client.get(path, **headers)
    assert response.status_code == 200
    return response.content.decode()


def _assert_sent_to(body: str, site, host: str) -> None:
    assert f">{host}<" in body
    assert f"echoscu -aet {site.ae_title} -aec NCCID {host} 11112" in body
    assert "0.0.0.0" not in body


@pytest.mark.parametrize("path", ["/guidance/", "/faq/"])
def test_node_public_host_is_the_host_sites_send_to(uploader_client, site, node_settings, path):
    node_settings(node_host="0.0.0.0", node_public_host="dicom.nccid.example.nhs.uk",
                  public_url="https://nccid.example.nhs.uk")
    body = _page(uploader_client, path)
    assert "dicom.nccid.example.nhs.uk" in body and "0.0.0.0" not in body
    if path == "/guidance/":
        _assert_sent_to(body, site, "dicom.nccid.example.nhs.uk")


def test_without_it_the_host_of_public_url(uploader_client, site, node_settings):
    node_settings(node_host="0.0.0.0", public_url="https://nccid.example.nhs.uk")
    _assert_sent_to(_page(uploader_client), site, "nccid.example.nhs.uk")


def test_a_node_host_naming_one_address_is_shown(uploader_client, site, node_settings):
    node_settings(node_host="10.20.30.40")
    _assert_sent_to(_page(uploader_client), site, "10.20.30.40")


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])
def test_a_wildcard_node_host_gives_the_portals_own_host_name(uploader_client, site, node_settings,
                                                              wildcard):
    node_settings(node_host=wildcard)
    body = _page(uploader_client, HTTP_HOST="nccid.hospital.test:8000")
    _assert_sent_to(body, site, "nccid.hospital.test")
    assert f">{wildcard}<" not in body
