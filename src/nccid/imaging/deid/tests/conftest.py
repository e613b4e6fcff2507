"""Fixtures of the de-identification tests: a fixed keyring and synthetic instances (pure, no DB)."""

from __future__ import annotations

import pytest

from nccid.identity.keys import Keyring
from nccid.imaging.deid import Deidentifier
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
