"""Every `mrzero` subcommand is listed and answers `--help` (argparse exits 0) with its own usage."""

import pytest

from mrzero.cli import COMMANDS, build_parser, main

SUBCOMMANDS = [name.replace("_", "-") for name in COMMANDS]


def test_every_command_module_is_reachable_from_the_top_level_help(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    listing = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in listing


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help(name, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([name, "--help"])
    assert done.value.code == 0
    assert f"usage: mrzero {name}" in capsys.readouterr().out


def test_unknown_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as done:
        main(["no-such-command"])
    assert done.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
