"""`mga --help` lists every subcommand and each subcommand describes itself."""

from __future__ import annotations

import pytest
from mga.distill.cli.main import app
from typer.testing import CliRunner

COMMANDS = ["label", "judge", "train", "quantize", "report", "run", "expand", "tiny-model", "analyze"]
runner = CliRunner()


def test_help_lists_subcommands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_subcommand_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and len(result.output.splitlines()) > 5
