"""Every model change ships with its migration (a deployment runs ``nccid init`` to migrate)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command


@pytest.mark.django_db(databases=["default", "vault"])
def test_no_model_change_is_missing_its_migration():
    out = io.StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit as exc:  # --check exits 1 when a migration would be made
        pytest.fail(f"models and migrations differ (exit {exc.code}):\n{out.getvalue()}")
