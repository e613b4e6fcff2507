"""Scan every byte written under some folders for planted identifiers.

Used by the privacy tests: plant identifiers of synthetic people, run the system, then prove
no file (databases, warehouse, catalogue, logs) holds any of them, in UTF-8 or UTF-16.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def needle_forms(needle: str) -> list[bytes]:
    forms = {needle.encode("utf-8"), needle.encode("utf-16-le"), needle.upper().encode("utf-8")}
    return sorted(forms)


def find_leaks(paths: Iterable[Path], needles: Iterable[str], min_length: int = 5) -> list[str]:
    """Every ``file: needle`` where a needle (or its UTF-16/upper-case form) occurs in a file.

    Needles shorter than ``min_length`` are refused: they would match by chance.
    """
    wanted = [n for n in set(needles) if n]
    short = [n for n in wanted if len(n) < min_length]
    if short:
        raise ValueError(f"needles too short to scan for reliably: {short}")
    forms = [(n, f) for n in wanted for f in needle_forms(n)]
    hits: list[str] = []
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for file in files:
            data = file.read_bytes()
            for needle, form in forms:
                if form in data:
                    hits.append(f"{file}: {needle}")
    return hits
