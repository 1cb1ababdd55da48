"""polling.pyasic_tuning: auto applies the tuning only to the pyasic release it was written for."""

import pytest
import structlog

from collectors import pyasic_tuning


@pytest.fixture(autouse=True)
def fresh_log_flag(monkeypatch):
    """Each test sees the once-per-process log flag unset."""
    monkeypatch.setattr(pyasic_tuning, "_disabled_logged", False)


@pytest.mark.parametrize(
    ("mode", "version", "applies"),
    [
        ("auto", pyasic_tuning.WRITTEN_FOR, True),
        ("auto", "0.80.0", False),
        ("auto", "0.78.9", False),
        ("on", "0.80.0", True),
        ("on", pyasic_tuning.WRITTEN_FOR, True),
        ("off", pyasic_tuning.WRITTEN_FOR, False),
    ],
)
def test_tuning_select_by_mode_and_version(mode, version, applies):
    """auto: only on 0.79.0; on: always; off: never."""
    assert pyasic_tuning.select(mode, version) is applies


def test_tuning_select_installed_pyasic_is_the_one_written_for():
    """The locked pyasic is the release the tuning targets, so auto applies it by default."""
    assert pyasic_tuning.select("auto") is True


def test_tuning_disabled_logged_once_with_the_version():
    """Under auto, another pyasic logs pyasic_tuning_disabled once, at warning, naming the version."""
    with structlog.testing.capture_logs() as logs:
        pyasic_tuning.select("auto", "0.80.0")
        pyasic_tuning.select("auto", "0.80.0")
    assert len(logs) == 1
    assert logs[0]["event"] == "pyasic_tuning_disabled"
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["pyasic_version"] == "0.80.0"
    assert logs[0]["written_for"] == pyasic_tuning.WRITTEN_FOR


def test_tuning_import_patches_nothing():
    """Importing the module leaves pyasic's detection as released until install()."""
    from pyasic.miners import factory  # noqa: PLC0415 - the module under inspection

    pyasic_tuning.uninstall()
    assert not getattr(factory.asyncio, "_altiwatch_capped", False)
    assert not getattr(factory.MinerFactory._socket_ping, "_altiwatch_wrapped", False)
    pyasic_tuning.install()
    assert factory.asyncio._altiwatch_capped
    assert factory.MinerFactory._socket_ping._altiwatch_wrapped
    pyasic_tuning.uninstall()
    assert not getattr(factory.asyncio, "_altiwatch_capped", False)
