"""Fixtures of the de-identification tests: a fixed keyring and synthetic instances (pure, no DB)."""

from __future__ import annotations

import pytest

from nccid.identity.keys import Keyring
from nccid.imaging.deid import Deidentifier
from nccid.imaging.deid.by_element import deidentify_by_element
from nccid.imaging.deid.engine import parse_header
from nccid.synthetic.dicom import synthetic_instance
from nccid.synthetic.people import people


@pytest.fixture
def kr() -> Keyring:
    return Keyring(bytes(range(32)))


@pytest.fixture
def person():
    return people(3, seed=7)[1]


@pytest.fixture
def deid(kr) -> Deidentifier:
    return Deidentifier(kr)


@pytest.fixture
def instance(person):
    return synthetic_instance(person)


@pytest.fixture
def by_both_paths():
    """``(engine, data) -> the de-identified file``, after checking that the element-by-element
    path (the first time, then from its memo) writes the same bytes as the engine."""

    def deidentify(engine: Deidentifier, data: bytes, pseudonym: str = "NCCID-A") -> bytes:
        out, _ = engine.deidentify_bytes(data, pseudonym=pseudonym)
        for _ in range(2):
            made = deidentify_by_element(engine, data, parse_header(data), pseudonym)
            assert made is not None and b"".join(made[0]) == out
        return out

    return deidentify
