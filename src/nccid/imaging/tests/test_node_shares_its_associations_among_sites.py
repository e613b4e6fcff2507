"""One calling AE title, or one address, holds at most a share of the node's associations:
AE titles are no secret, and one peer holding all 32 with a C-ECHO a minute each turned every
other site away ("association limit (32) reached") for as long as it liked."""

from __future__ import annotations

import logging
import threading

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

on_a_node = pytest.mark.django_db(transaction=True, databases=["default", "vault"])
BOUND = 20.0  # seconds: a bound on waits that end at once when all is well


@pytest.fixture
def shares(monkeypatch):
    """Shares of 2 per AE title and 3 per address, set as an operator would."""
    from nccid.config import reset_settings_cache

    monkeypatch.setenv("NCCID_NODE_ASSOCIATIONS_PER_AE_TITLE", "2")
    monkeypatch.setenv("NCCID_NODE_ASSOCIATIONS_PER_ADDRESS", "3")
    reset_settings_cache()
    yield
    monkeypatch.undo()
    reset_settings_cache()


@pytest.fixture
def capped(shares, node):
    return node


class _Answer:
    """An association request, with the A-ASSOCIATE-RJ's (result, source, reason) if refused."""

    def __init__(self, port: int, calling: str) -> None:
        self.refusal: tuple[int, int, int] | None = None
        ae = AE(ae_title=calling)
        ae.add_requested_context(Verification)
        ae.acse_timeout = ae.network_timeout = BOUND
        self.assoc = ae.associate("127.0.0.1", port, ae_title="NCCID",
                                  evt_handlers=[(evt.EVT_ACSE_RECV, self._heard)])

    def _heard(self, event) -> None:
        primitive = event.primitive
        if getattr(primitive, "result", None) in (0x01, 0x02):
            self.refusal = (primitive.result, primitive.result_source, primitive.diagnostic)


class _Refusals(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self.heard = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        if "refused an association" in record.getMessage():
            with self.heard:
                self.messages.append(record.getMessage())
                self.heard.notify_all()

    def wait_for(self, count: int) -> list[str]:
        with self.heard:
            assert self.heard.wait_for(lambda: len(self.messages) >= count, BOUND)
            return list(self.messages)


@pytest.fixture
def refusals():
    handler = _Refusals()
    logger = logging.getLogger("nccid.imaging.node")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


TRANSIENT_LOCAL_LIMIT = (0x02, 0x03, 0x02)  # transient, service provider, local limit exceeded


@on_a_node
def test_one_ae_title_past_its_share_is_refused_and_other_sites_still_get_in(
        capped, site, other_site, refusals):
    held = [_Answer(capped.port, "RTEST_PACS") for _ in range(2)]
    assert all(answer.assoc.is_established for answer in held)
    try:
        third = _Answer(capped.port, "RTEST_PACS")
        assert third.assoc.is_rejected and third.refusal == TRANSIENT_LOCAL_LIMIT
        [message] = refusals.wait_for(1)
        assert "AE RTEST_PACS at 127.0.0.1" in message
        assert ("its AE title holds 2 association(s) already: at most 2 per AE title "
                "(node_associations_per_ae_title)") in message
        other = _Answer(capped.port, "OTHER_PACS")  # another site is not turned away
        assert other.assoc.is_established and other.assoc.send_c_echo().Status == 0
        other.assoc.release()
        # once one of the title's associations ends, the title may open another
        held.pop().assoc.release()
        assert capped.server.shares.wait_until(lambda s: s.held("RTEST_PACS") == 1, BOUND)
        again = _Answer(capped.port, "RTEST_PACS")
        assert again.assoc.is_established
        held.append(again)
    finally:
        for answer in held:
            answer.assoc.release()


@on_a_node
def test_one_address_past_its_share_is_refused_whatever_the_titles(capped, site, other_site,
                                                                  refusals):
    from nccid.accounts.models import Site

    Site.objects.create(code="THIRD", name="Third Test Hospital", ae_title="THIRD_PACS")
    held = [_Answer(capped.port, title) for title in ("RTEST_PACS", "RTEST_PACS", "OTHER_PACS")]
    assert all(answer.assoc.is_established for answer in held)
    try:
        fourth = _Answer(capped.port, "THIRD_PACS")  # its own title's first, the address's 4th
        assert fourth.assoc.is_rejected and fourth.refusal == TRANSIENT_LOCAL_LIMIT
        [message] = refusals.wait_for(1)
        assert ("its address holds 3 association(s) already: at most 3 per address "
                "(node_associations_per_address)") in message
    finally:
        for answer in held:
            answer.assoc.release()


@on_a_node
def test_an_unknown_title_is_still_told_it_is_no_site_s(capped, site, other_site, refusals):
    held = [_Answer(capped.port, title) for title in ("RTEST_PACS", "RTEST_PACS", "OTHER_PACS")]
    assert all(answer.assoc.is_established for answer in held)  # the address's share is full
    try:
        stranger = _Answer(capped.port, "STRANGER")
        assert stranger.assoc.is_rejected and stranger.refusal == (0x01, 0x01, 0x03)
        [message] = refusals.wait_for(1)
        assert "not a registered site's AE title" in message
    finally:
        for answer in held:
            answer.assoc.release()
