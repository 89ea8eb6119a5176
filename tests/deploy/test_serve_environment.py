"""``mrzero serve`` takes its deployment defaults from ``MRZERO_*`` variables; the command line
wins; a bad value is one clear line naming the variable and exit code 2, before anything starts."""

from __future__ import annotations

import socket
from pathlib import Path

import ismrmrd
import pytest

from mrzero.cli import build_parser, main
from mrzero.commands.serve import ENVIRONMENT
from mrzero.environment import BadEnvironment, resolve
from mrzero.pipelines.base import Context, PipelineError
from mrzero.pipelines.learned.recon import ReconSettings


def parsed(argv: list[str], environ: dict[str, str]):
    args = build_parser().parse_args(["serve", *argv])
    resolve(args, ENVIRONMENT, environ)
    return args


def test_help_names_every_variable(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for option in ENVIRONMENT:
        assert f"env {option.variable}" in text


def test_variables_give_the_defaults_and_the_command_line_wins():
    environ = {
        "MRZERO_HOST": "0.0.0.0",
        "MRZERO_PORT": "9100",
        "MRZERO_HEALTH_PORT": "9180",
        "MRZERO_DATA_DIR": "/srv/journal",
        "MRZERO_BUNDLE_STORE": "/srv/bundles",
        "MRZERO_DRAIN_TIMEOUT": "12.5",
        "MRZERO_JOURNAL_PREFIX": "pod-7",
        "MRZERO_LOG_LEVEL": "WARNING",
        "MRZERO_DEVICE": "cpu",
    }
    args = parsed([], environ)
    assert (args.host, args.port, args.health_port) == ("0.0.0.0", 9100, 9180)
    assert (args.data_dir, args.bundle_store) == (Path("/srv/journal"), Path("/srv/bundles"))
    assert (args.drain_timeout, args.journal_prefix) == (12.5, "pod-7")
    assert (args.log_level, args.device) == ("warning", "cpu")

    args = parsed(
        ["--port", "7000", "--host", "127.0.0.1", "--drain-timeout", "0", "--data-dir", "j"], environ
    )
    assert (args.port, args.host, args.drain_timeout, args.data_dir) == (7000, "127.0.0.1", 0.0, Path("j"))
    assert args.health_port == 9180  # not on the command line: still the variable's


def test_unset_or_empty_variables_leave_the_built_in_defaults():
    args = parsed([], {"MRZERO_HEALTH_PORT": "", "MRZERO_PORT": "  "})
    assert (args.host, args.port, args.health_port, args.bundle_store) == ("127.0.0.1", 9002, None, None)
    assert (args.data_dir, args.drain_timeout, args.device, args.log_level) == (
        Path("mrd-journal"),
        90.0,
        "auto",
        "info",
    )


@pytest.mark.parametrize(
    "variable, value, says",
    [
        ("MRZERO_PORT", "http", "not a TCP port"),
        ("MRZERO_HEALTH_PORT", "70000", "not a TCP port"),
        ("MRZERO_DRAIN_TIMEOUT", "-1", "not a number of seconds"),
        ("MRZERO_DRAIN_TIMEOUT", "nan", "not a number of seconds"),
        ("MRZERO_JOURNAL_PREFIX", "../etc", "not a file-name prefix"),
        ("MRZERO_LOG_LEVEL", "loud", "not a log level"),
        ("MRZERO_DEVICE", "tpu", "not a device"),
        ("MRZERO_HOST", "two words", "not a host"),
    ],
)
def test_a_bad_variable_is_named_and_nothing_starts(monkeypatch, capsys, variable, value, says):
    monkeypatch.setenv(variable, value)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mrzero serve: {variable}={value!r}: {says}") and err.count("\n") == 1, err
    with pytest.raises(BadEnvironment, match=variable):
        parsed([], {variable: value})


def test_a_bad_command_line_value_names_the_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--port", "http"])
    assert exit_.value.code == 2
    assert "--port: not a TCP port" in capsys.readouterr().err


def test_a_cuda_device_torch_cannot_see_is_refused_at_start(monkeypatch, capsys):
    monkeypatch.setenv("MRZERO_DEVICE", "cuda:99")
    assert main(["serve"]) == 2
    assert "device 'cuda:99' asked for (--device / MRZERO_DEVICE), but torch sees" in capsys.readouterr().err


def test_a_taken_port_is_one_clear_line(tmp_path, capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on the MRD port 127.0.0.1:{port}: Address already in use" in err


def test_the_servers_device_reaches_the_mrzero_reconstruction():
    conditions = ismrmrd.xsd.experimentalConditionsType(H1resonanceFrequency_Hz=63500000)
    header = ismrmrd.xsd.ismrmrdHeader(experimentalConditions=conditions)
    assert ReconSettings.from_context(Context(header, device="cpu"), None, iterative=False).device == "cpu"
    with pytest.raises(PipelineError, match="got 'tpu'"):  # the server's device is what is used...
        ReconSettings.from_context(Context(header, device="tpu"), None, iterative=False)
    client = Context(
        header, parameters={"device": "cpu"}, device="tpu", pipeline_name="iterative_adjoint"
    )  # ...unless the client names one
    assert ReconSettings.from_context(client, None, iterative=True).device == "cpu"
