"""Specification of agent/cli.py: dispatch, extension registration, exit codes."""

from __future__ import annotations

import sys
import textwrap

import pytest

from agent import cli


@pytest.fixture
def extension_dir(tmp_path, monkeypatch):
    """A directory on sys.path for throw-away extension modules."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("aw_ext_")]:
        del sys.modules[name]


def _module(directory, name: str, body: str) -> str:
    (directory / f"{name}.py").write_text(textwrap.dedent(body))
    return name


def test_cli_extension_subcommand_is_registered_and_dispatched(extension_dir, monkeypatch, capsys):
    """A module in EXTENSIONS with register() adds a subcommand; func= or handler= both run it."""
    name = _module(
        extension_dir,
        "aw_ext_hello",
        """
        def register(subparsers):
            parser = subparsers.add_parser("hello")
            parser.add_argument("--who", default="world")
            parser.set_defaults(func=lambda args: print(f"hello {args.who}") or 3)
        """,
    )
    monkeypatch.setattr(cli, "EXTENSIONS", (name,))
    assert cli.main(["hello", "--who", "golmud"]) == 3
    assert capsys.readouterr().out == "hello golmud\n"


def test_cli_missing_extension_is_skipped(monkeypatch, capsys):
    """A listed module that does not exist yet is skipped silently."""
    monkeypatch.setattr(cli, "EXTENSIONS", ("agent.not_written_yet",))
    parser = cli.build_parser()
    assert "check-config" in parser.format_help()
    assert capsys.readouterr().err == ""


def test_cli_broken_extension_does_not_break_run(extension_dir, monkeypatch, capsys):
    """An extension failing at import is reported on stderr; the core subcommands still work."""
    name = _module(extension_dir, "aw_ext_broken", "raise RuntimeError('boom at import')\n")
    other = _module(extension_dir, "aw_ext_needs", "import aw_ext_absent_dependency\n")
    monkeypatch.setattr(cli, "EXTENSIONS", (name, other))
    parser = cli.build_parser()
    err = capsys.readouterr().err
    assert "aw_ext_broken unavailable" in err
    assert "boom at import" in err
    assert "aw_ext_needs unavailable" in err
    assert "check-config" in parser.format_help()


def test_cli_no_subcommand_is_usage_error(capsys):
    """Without a subcommand the CLI prints help on stderr and returns 64."""
    assert cli.main([]) == cli.EX_USAGE
    assert "usage: altiwatch" in capsys.readouterr().err


def test_cli_check_config_returns_78_on_bad_file(tmp_path, capsys):
    """check-config returns EX_CONFIG with the message on stderr and nothing on stdout."""
    path = tmp_path / "c.yaml"
    path.write_text("sites: [{name: a, altitude_m: 7000}]\n")
    assert cli.main(["check-config", str(path)]) == cli.EX_CONFIG
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "sites.0.altitude_m (line 1)" in captured.err
