"""A linker killed while it links (kill -9) leaves its claim on the image it was storing. A
claim names its process (host and pid): the next linking pass takes at once the claim of a
process of this host that no longer runs, and leaves one of a process still running, or of
another host (which cannot be checked), until it is stale (``STALE_CLAIM``), counting those
images. ``nccid images link`` says how many it could not link and exits 1 while an image whose
patient is known still waits (docs/dicom-node.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.utils import timezone

from nccid.cli.tests.clirun import run_cli, run_nccid
from nccid.imaging import deps
from nccid.imaging.linking import link_known
from nccid.imaging.models import PendingImage
from nccid.processes import process_gone, this_process
from nccid.synthetic.people import people

from .test_linking_resumes_after_a_kill import _assert_all_linked_once, _kill_while_linking
from .test_linking_resumes_after_a_store_outage import (
    _accept_writes,
    _pending,
    _refuse_writes,
    _sheet_confirmed,
)

BOTH = ["default", "vault"]


def _finished_pid() -> int:
    """The pid of a process of this host that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=60)
    return child.pid


def _waiting_with_claims(site, keyring, person, warehouse) -> dict[str, str]:
    """Three images of a patient whose record is in, waiting (their link stopped by a store
    outage), claimed by: a process of this host that ended, this (live) process, a process
    of another host. sop_uid -> whose claim."""
    sops = _pending(site, person, study=1, count=3)
    _refuse_writes(warehouse)
    _sheet_confirmed(site, keyring, person)
    _accept_writes(warehouse)
    dead = f"{this_process().split('.')[0]}.{_finished_pid()}"
    assert process_gone(dead) and not process_gone(this_process())
    claims = dict(zip(sops, [dead, this_process(), f"0ther0st.{_finished_pid()}"], strict=True))
    for sop_uid, claimer in claims.items():
        PendingImage.objects.filter(sop_uid=sop_uid).update(claimed_at=timezone.now(),
                                                             claimed_by=claimer)
    return claims


@pytest.mark.django_db(databases=BOTH)
def test_a_dead_process_s_claim_is_taken_at_once_and_a_live_or_remote_one_left_and_counted(
        site, keyring, person_factory, local_warehouse):
    claims = _waiting_with_claims(site, keyring, person_factory(71), local_warehouse)
    done = link_known()
    assert (done.linked, done.failed, done.claimed_elsewhere) == (1, 0, 2)
    dead, live, remote = claims
    assert set(PendingImage.objects.values_list("sop_uid", flat=True)) == {live, remote}
    assert deps.image_exists(dead)


@pytest.mark.django_db(databases=BOTH)
@pytest.mark.parametrize("command", ["link", "purge-pending"])
def test_images_link_says_how_many_another_linker_holds_and_exits_1(
        site, keyring, person_factory, local_warehouse, monkeypatch, command):
    _waiting_with_claims(site, keyring, person_factory(72), local_warehouse)
    result = run_cli(monkeypatch, "images", command)
    assert result.code == 1, result.out + result.err
    assert "Linked 1 pending image(s)." in result.out
    line = result.err_text
    assert ("2 pending image(s) could not be linked: 2 held by another process linking them"
            in line), line
    assert "they wait for the next 'nccid images link'" in line
    PendingImage.objects.update(claimed_at=None, claimed_by="")  # (their linkers gave up)
    again = run_cli(monkeypatch, "images", command)
    assert again.code == 0, again.out + again.err
    assert "Linked 2 pending image(s)." in again.out and not PendingImage.objects.exists()


@pytest.mark.django_db(databases=BOTH)
def test_a_claim_names_the_process_that_holds_it(site, keyring, person_factory,
                                                 local_warehouse, monkeypatch):
    _pending(site, person_factory(73), study=1, count=1)
    seen = []
    real = deps.store_image

    def store(*args, **kwargs):
        seen.extend(PendingImage.objects.values_list("claimed_by", flat=True))
        return real(*args, **kwargs)

    monkeypatch.setattr(deps, "store_image", store)
    _sheet_confirmed(site, keyring, person_factory(73))
    assert seen == [this_process()] and this_process().endswith(f".{os.getpid()}")


def test_images_link_right_after_a_killed_import_links_every_image(nccid_home, tmp_path):
    """No ten minutes' wait: the killed import's claim is its own, and it no longer runs."""
    person = people(11, seed=7)[10]
    _kill_while_linking(nccid_home, tmp_path, "store_image", person)
    linked = run_nccid("images", "link", env={"NCCID_HOME": str(nccid_home)})
    assert linked.code == 0, linked.out + linked.err
    _assert_all_linked_once(nccid_home)
