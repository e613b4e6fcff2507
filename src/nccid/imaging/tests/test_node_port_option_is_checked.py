"""`nccid node --port` out of range is a usage error before anything starts (pynetdicom
raised OverflowError, a traceback)."""

import pytest
from typer.testing import CliRunner


@pytest.mark.parametrize("port", ["-1", "0", "70000"])
def test_a_node_port_out_of_range_is_a_usage_error(port):
    from nccid.cli.main import typer_app

    result = CliRunner().invoke(typer_app, ["node", "--port", port])
    assert result.exit_code == 2
    assert "Invalid value for '--port'" in result.output
