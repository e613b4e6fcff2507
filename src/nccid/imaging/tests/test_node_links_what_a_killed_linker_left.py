"""The node runs a linking pass when it starts and every ``LINK_PASS_SECONDS``: waiting images
whose record came in while no linker finished (a portal killed mid-link) are linked without
an operator's ``nccid images link``."""

from __future__ import annotations

import pytest

from nccid.imaging.intake import ingest
from nccid.imaging.models import PendingImage
from nccid.imaging.outcome import IngestStatus
from nccid.imaging.upkeep import LinkingUpkeep
from nccid.synthetic.dicom import synthetic_instance, to_bytes
from nccid.warehouse.models import ImageRecord

from .sheets import record_and_link

# Committed for real, as in the node (whose pass drops connections a restart ended).
pytestmark = pytest.mark.django_db(databases=["default", "vault"], transaction=True)


def _record_without_linking(site, keyring, person) -> None:
    """The patient's record and link committed; the linker that should follow never ran."""
    record_and_link(site, keyring, person)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _wait(site, person, instance: int) -> str:
    outcome = ingest(to_bytes(synthetic_instance(person, instance=instance, plant=False)),
                     site, "test")
    assert outcome.status == IngestStatus.PENDING
    return outcome.sop_uid


def test_the_pass_runs_at_start_then_once_per_interval(site, keyring, person_factory,
                                                       local_warehouse):
    person = person_factory(61)
    first = _wait(site, person, 1)
    _record_without_linking(site, keyring, person)
    clock = _Clock()
    upkeep = LinkingUpkeep(interval=600.0, clock=clock)

    assert upkeep.tick()  # at start
    assert set(ImageRecord.objects.values_list("sop_uid", flat=True)) == {first}
    assert not PendingImage.objects.exists()

    later = person_factory(62)
    second = _wait(site, later, 1)
    _record_without_linking(site, keyring, later)
    clock.now += 599.0
    assert not upkeep.tick()  # not yet due
    assert PendingImage.objects.filter(sop_uid=second).exists()
    clock.now += 1.0
    assert upkeep.tick()
    assert set(ImageRecord.objects.values_list("sop_uid", flat=True)) == {first, second}


def test_a_pass_goes_in_short_slices_so_the_node_sees_sigterm(site, keyring, person_factory,
                                                               local_warehouse):
    """The pass runs in the node's main thread: it links for at most ``slice_`` seconds a tick
    and goes on at the next tick, not ten minutes later."""
    person = person_factory(64)
    sops = {_wait(site, person, i) for i in (1, 2)}
    _record_without_linking(site, keyring, person)
    upkeep = LinkingUpkeep(interval=600.0, clock=_Clock(), slice_=-1.0)  # a slice already over

    assert upkeep.tick() and upkeep.tick()  # nothing linked in either: the next goes on at once
    assert set(PendingImage.objects.values_list("sop_uid", flat=True)) == sops
    upkeep.slice = 60.0
    assert upkeep.tick()
    assert set(ImageRecord.objects.values_list("sop_uid", flat=True)) == sops
    assert not upkeep.tick()  # finished: the next pass is ten minutes away


def test_a_failing_pass_never_stops_the_node(site, keyring, person_factory, local_warehouse,
                                             monkeypatch):
    from nccid.imaging import linking

    def store_away(deadline=None):
        raise ConnectionError("the database does not answer")

    monkeypatch.setattr(linking, "link_known", store_away)
    assert LinkingUpkeep(clock=_Clock()).tick()


def test_an_upload_links_for_a_bounded_time_and_leaves_the_rest_to_the_next_pass(
        site, keyring, person_factory, local_warehouse, monkeypatch, caplog):
    """A sheet naming patients with thousands of waiting images must not keep a portal request
    past gunicorn's timeout: past ``UPLOAD_LINK_SECONDS`` the rest is left, not lost."""
    from nccid.clinical.signals import AcceptedRecord, records_accepted
    from nccid.imaging import linking

    person = person_factory(63)
    sops = {_wait(site, person, i) for i in (1, 2, 3)}
    _record_without_linking(site, keyring, person)
    monkeypatch.setattr(linking, "UPLOAD_LINK_SECONDS", -1.0)  # the deadline already passed
    records_accepted.send(sender=None, site=site, upload_id=None, records=[AcceptedRecord(
        pseudonym=keyring.pseudonym(person.nhs_number), cleaned={}, kind="positive",
        hospital_hash=keyring.hospital_hash(site.code, person.hospital_number))])

    assert set(PendingImage.objects.values_list("sop_uid", flat=True)) == sops
    assert "3 waiting image(s) of site" in caplog.text
    assert LinkingUpkeep(clock=_Clock()).tick()
    assert set(ImageRecord.objects.values_list("sop_uid", flat=True)) == sops
    assert not PendingImage.objects.exists()


def _serve_until_sigterm(monkeypatch, tmp_path, drain: bool) -> None:
    """``nccid node`` (``serve``) on a free port with ``node_drain`` as given, sent SIGTERM as
    soon as its handler is installed: it starts, runs what it runs at start, and stops."""
    import faulthandler
    import signal

    from nccid.config import reset_settings_cache
    from nccid.imaging.node import serve

    from .conftest import free_port

    def sigterm_at_once(signum, handler):
        assert signum == signal.SIGTERM
        handler(signum, None)

    try:
        with monkeypatch.context() as patch:
            patch.setattr(faulthandler, "register", lambda *args: None)
            patch.setattr(signal, "signal", sigterm_at_once)
            patch.setenv("NCCID_NODE_DRAIN", "true" if drain else "false")
            patch.setenv("NCCID_NODE_WORKER_PROCESS", "false")
            patch.setenv("NCCID_SPOOL_DIR", str(tmp_path / f"spool-{drain}"))
            reset_settings_cache()
            serve("127.0.0.1", free_port())
    finally:
        reset_settings_cache()  # the settings of the test, not of this node


def test_a_node_with_node_drain_off_links_nothing(site, keyring, person_factory,
                                                  local_warehouse, monkeypatch, tmp_path):
    """node_drain off is the operator's pause: nothing is de-identified or stored (e.g. during
    warehouse maintenance), so the node's linking pass does not run either."""
    person = person_factory(65)
    sop = _wait(site, person, 1)
    _record_without_linking(site, keyring, person)

    _serve_until_sigterm(monkeypatch, tmp_path, drain=False)
    assert PendingImage.objects.filter(sop_uid=sop).exists()
    assert not ImageRecord.objects.exists()

    _serve_until_sigterm(monkeypatch, tmp_path, drain=True)  # the pass runs at start
    assert set(ImageRecord.objects.values_list("sop_uid", flat=True)) == {sop}
    assert not PendingImage.objects.exists()
