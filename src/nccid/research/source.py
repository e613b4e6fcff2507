"""Where research reads from: the catalogue (DuckDB) and the warehouse objects.

A ``Source`` bundles the two so the services, the CLI, the API and the tests all read
through the same seam; the default is the installation's own catalogue and warehouse.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import duckdb


@dataclass
class Source:
    connect: Callable[[], duckdb.DuckDBPyConnection]
    warehouse: Any  # nccid.warehouse.service.Warehouse: open(key), read(key), exists(key)

    def open_object(self, key: str) -> BinaryIO:
        """A binary stream of one warehouse object (streamed when the warehouse can)."""
        opener = getattr(self.warehouse, "open", None)
        if opener is not None:
            return opener(key)
        return io.BytesIO(self.warehouse.read(key))

    def exists(self, key: str) -> bool:
        return bool(self.warehouse.exists(key))


def default_source() -> Source:
    """The installation's catalogue (read-only) and warehouse."""
    from nccid.warehouse.catalogue import connect_catalogue
    from nccid.warehouse.service import get_warehouse

    return Source(connect=lambda: connect_catalogue(read_only=True), warehouse=get_warehouse())
