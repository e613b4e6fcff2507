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
import pyarrow as pa


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
    """The installation's catalogue (read-only, without withdrawn patients and removed
    studies) and warehouse."""
    from nccid.warehouse.catalogue import connect_catalogue
    from nccid.warehouse.service import get_warehouse

    return Source(connect=lambda: without_withdrawn(connect_catalogue(read_only=True)),
                  warehouse=get_warehouse())


# The columns naming what a withdrawal removes, in each catalogue view.
_WITHDRAWN_COLUMNS = {"images": ("pseudonym", "study_uid"), "studies": ("pseudonym", "study_uid"),
                      "clinical": ("pseudonym",), "patients": ("pseudonym",)}


def without_withdrawn(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """``con`` with its catalogue views hiding every patient on the withdrawal list (complete
    or not) and every removed study. A withdrawal's catalogue refresh can fail (disk, S3)
    and leave the previous version published: research reads never show the patient even
    then. Every research reader opens the catalogue here, so every one is covered."""
    from nccid.withdrawal.models import StudyWithdrawal, Withdrawal

    hidden = {"pseudonym": list(Withdrawal.objects.values_list("pseudonym", flat=True)),
              "study_uid": list(StudyWithdrawal.objects.values_list("study_uid", flat=True))}
    if not any(hidden.values()):
        return con
    for column, values in hidden.items():
        con.register(f"_withdrawn_{column}", pa.table({column: pa.array(values, pa.string())}))
    for view, columns in _WITHDRAWN_COLUMNS.items():
        con.execute(f"ALTER VIEW {view} RENAME TO _catalogue_{view}")
        kept = " AND ".join(f"NOT EXISTS (SELECT 1 FROM _withdrawn_{c} w WHERE w.{c} = t.{c})"
                            for c in columns)
        con.execute(f"CREATE VIEW {view} AS SELECT t.* FROM _catalogue_{view} t WHERE {kept}")
    return con
