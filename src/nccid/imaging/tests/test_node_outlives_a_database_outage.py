"""The node on a real PostgreSQL server (a scratch one, whatever the session's database): the
server ending every connection (as a restart does), or not answering at all, delays storage
and never the sites. Files sent after a restart are stored, not quarantined; while the
database refuses connections a registered site is still accepted and its files wait in the
spool, an unknown AE title is still refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from pynetdicom import AE, StoragePresentationContexts

from nccid.imaging.spool import quarantined
from nccid.web.testing import ScratchPostgres, running_postgres

from .conftest import free_port, synthetic_instance, wait_for_port

NCCID = [sys.executable, "-m", "nccid.cli.main"]
pytestmark = pytest.mark.postgres  # a scratch server of its own, in either test run
AE_TITLE = "PGSITE_PACS"


@pytest.fixture(scope="module")
def postgres():
    with running_postgres() as server:
        yield server


class _Installation:
    """An initialised NCCID_HOME whose two databases are on the scratch server."""

    def __init__(self, home: Path, server: ScratchPostgres) -> None:
        self.home, self.server = home, server
        self.main, self.vault = server.create_databases("node")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NCCID_")} | {
            "NCCID_HOME": str(home), "DATABASE_URL": server.url(self.main),
            "VAULT_DATABASE_URL": server.url(self.vault)}
        run = dict(check=True, capture_output=True, timeout=180, env=self.env)
        subprocess.run([*NCCID, "init"], **run)
        subprocess.run([*NCCID, "site", "add", "PGSITE", "--name", "Postgres Test Hospital",
                        "--ae-title", AE_TITLE], **run)

    def stored(self) -> int:
        return self.server.query(self.main, "SELECT count(*) FROM warehouse_imagerecord")[0][0]

    def refused(self) -> int:
        return self.server.query(
            self.main, "SELECT coalesce(sum(rejected), 0) FROM imaging_studyreceipt")[0][0]

    def quarantined(self) -> list[Path]:
        return quarantined(self.home / "spool")

    def wait_stored(self, count: int, timeout: float = 120.0) -> None:
        """Bounded: until ``count`` images are stored, or one was quarantined or refused."""
        deadline = time.monotonic() + timeout
        while (self.stored() < count and not self.quarantined() and not self.refused()
               and time.monotonic() < deadline):
            time.sleep(0.1)  # polling interval of a bounded wait, not synchronisation

    @contextmanager
    def node(self):
        port = free_port()
        log = open(self.home / "node-test.log", "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen([*NCCID, "node", "--port", str(port)], env=self.env,
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, timeout=60, process=process)
            yield port
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            log.close()


@pytest.fixture
def installation(nccid_home, postgres) -> _Installation:
    return _Installation(nccid_home, postgres)


def _study(person, study: int, count: int = 3) -> list:
    return [synthetic_instance(person, modality="CT", study=study, instance=i,
                               patient_id=person.nhs_number, plant=False)
            for i in range(1, count + 1)]


def _associate(port: int, calling: str = AE_TITLE):
    ae = AE(ae_title=calling)
    ae.requested_contexts = StoragePresentationContexts[:100]
    ae.acse_timeout = 30
    return ae.associate("127.0.0.1", port, ae_title="NCCID")


def _send(port: int, datasets) -> list[int]:
    assoc = _associate(port)
    assert assoc.is_established, "the node did not accept the site's association"
    statuses = [assoc.send_c_store(ds).Status for ds in datasets]
    assoc.release()
    return statuses


def test_files_sent_after_the_database_ended_the_nodes_connections_are_stored(
        installation, person_factory):
    person = person_factory(81)
    with installation.node() as port:
        assert _send(port, _study(person, 1)) == [0, 0, 0]
        installation.wait_stored(3)
        assert installation.stored() == 3
        # The node (its drain and its de-identification process) holds connections: a
        # restart of the server ends them all.
        assert installation.server.end_connections(installation.main, installation.vault) >= 1
        assert _send(port, _study(person, 2)) == [0, 0, 0]
        installation.wait_stored(6)
        assert installation.stored() == 6
    assert installation.quarantined() == []
    assert installation.refused() == 0


def test_a_site_is_accepted_while_the_database_does_not_answer_and_its_files_wait(
        installation, person_factory):
    person = person_factory(82)
    server, databases = installation.server, (installation.main, installation.vault)
    with installation.node() as port:
        assert _send(port, _study(person, 1, count=1)) == [0]
        installation.wait_stored(1)
        server.refuse_connections(*databases)
        try:
            assert _send(port, _study(person, 2)) == [0, 0, 0]  # acknowledged from the spool
            assert _associate(port, "STRANGER_PACS").is_rejected  # still refused
        finally:
            server.allow_connections(*databases)
        installation.wait_stored(4)
        assert installation.stored() == 4
    assert installation.quarantined() == []
    assert installation.refused() == 0
