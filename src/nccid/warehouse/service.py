"""Django-side warehouse access (placeholder until the warehouse part lands)."""

from __future__ import annotations

from pathlib import Path

from nccid.config import get_settings


class _LocalWarehouse:
    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)


def get_warehouse():
    return _LocalWarehouse(get_settings().storage_url)
