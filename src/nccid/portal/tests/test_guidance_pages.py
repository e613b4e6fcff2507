"""Guidance And Documentation and FAQ: written for site staff, from the schema and settings."""

from __future__ import annotations

import pytest

from nccid.config import get_settings

pytestmark = pytest.mark.django_db


def test_guidance_tells_a_site_how_to_send_images_to_the_node(client, site, make_user):
    client.force_login(make_user("uploader", site))
    body = client.get("/guidance/").content.decode()
    node = get_settings()
    assert site.ae_title in body                       # the site's own calling AE title
    assert f">{node.node_ae_title}<" in body             # the node's AE title
    assert f">{node.node_host}<" in body and f">{node.node_port}<" in body
    assert f"echoscu -aet {site.ae_title} -aec {node.node_ae_title}" in body


def test_guidance_lists_every_template_column_with_codes_and_historical_headers(client, site, make_user):
    client.force_login(make_user("uploader", site))
    body = client.get("/guidance/").content.decode()
    for title in ("Covid-19 Data (Positive) Template v1.5", "Covid-19 Status (Negative) Template v1.0"):
        assert title in body
    assert "Sex (Male = 1, Female = 0)" in body
    assert "Never = 0, Ex-smoker = 1, Current = 2, Unknown = 3" in body
    assert "PMH h1pertension" in body                   # an accepted historical header
    assert "DD/MM/YYYY" in body
    assert "/templates/positive.xlsx" in body and "/templates/isaric.xlsx" in body


def test_guidance_says_what_happens_to_the_data_and_who_to_contact(client, site, make_user):
    manager = make_user("data-manager")
    manager.email, manager.first_name, manager.last_name = "dm@nccid.test", "Dana", "Manager"
    manager.save()
    client.force_login(make_user("uploader", site))
    body = client.get("/guidance/").content.decode()
    for phrase in ("Pseudonymisation at intake", "Key vault", "De-identification of images",
                   "Training and validation sets", f"{get_settings().validation_percent}%"):
        assert phrase in body, phrase
    assert "Dana Manager" in body and "mailto:dm@nccid.test" in body


def test_faq_answers_with_this_installations_node_details(client, site, make_user):
    client.force_login(make_user("uploader", site))
    body = client.get("/faq/").content.decode()
    assert "Which template do I use?" in body
    assert "press Confirm twice" in body
    assert get_settings().node_ae_title in body and site.ae_title in body
