"""A real PostgreSQL server for tests: a scratch cluster (``scripts/pg-scratch.sh``) on a free
loopback port, and what an operator or an outage does to it: every connection to a database
ended (what a server restart does to its clients), and new ones refused (a database that does
not answer). Nothing here is a mock: the processes under test talk to the server itself."""

from __future__ import annotations

import secrets
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "pg-scratch.sh"


@dataclass
class ScratchPostgres:
    port: int

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(self.url(database), autocommit=True)

    def create_databases(self, prefix: str = "t") -> tuple[str, str]:
        """A fresh main and vault database pair: (main, vault) names."""
        token = secrets.token_hex(4)
        names = (f"{prefix}_{token}", f"{prefix}_{token}_vault")
        with self._admin() as admin:
            for name in names:
                admin.execute(f'CREATE DATABASE "{name}"')
        return names

    def query(self, database: str, sql: str) -> list[tuple]:
        with self._admin(database) as conn:
            return conn.execute(sql).fetchall()

    def end_connections(self, *databases: str) -> int:
        """End every client connection to ``databases`` (as a restart does); how many."""
        with self._admin() as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()", [list(databases)]).fetchall()
        return sum(1 for (ended,) in rows if ended)

    def refuse_connections(self, *databases: str) -> None:
        """New connections to ``databases`` refused and the open ones ended: to its clients,
        the database does not answer until ``allow_connections``."""
        with self._admin() as admin:
            for name in databases:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        self.end_connections(*databases)

    def allow_connections(self, *databases: str) -> None:
        with self._admin() as admin:
            for name in databases:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_postgres() -> Iterator[ScratchPostgres]:
    """A scratch PostgreSQL server for the ``with`` block, deleted after it. Its folder is
    directly under the temporary directory: the server runs as ``postgres`` when we are root,
    and must reach it."""
    directory = Path(tempfile.gettempdir()) / f"nccid-pg-test-{secrets.token_hex(4)}"
    port = _free_port()
    subprocess.run([str(SCRIPT), "start", str(directory), str(port)], check=True,
                   capture_output=True, timeout=120)
    try:
        yield ScratchPostgres(port)
    finally:
        subprocess.run([str(SCRIPT), "stop", str(directory)], capture_output=True, timeout=120)
