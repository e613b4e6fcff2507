"""Initialised NCCID_HOMEs for the end-to-end tests of this part (separate processes)."""

from __future__ import annotations

import shutil

import pytest

from nccid.cli.tests.clirun import run_nccid


@pytest.fixture(scope="session")
def template_home(tmp_path_factory):
    """One initialised home per session; tests get copies (an init costs seconds)."""
    home = tmp_path_factory.mktemp("template") / "home"
    init(home)
    return home


@pytest.fixture
def home(template_home, nccid_home):
    shutil.copytree(template_home, nccid_home, copy_function=shutil.copy2)
    return nccid_home


def init(home):
    result = run_nccid("init", env={"NCCID_HOME": str(home)})
    assert result.code == 0, result.err
    return result


