"""Shared fixtures: each real part's fixtures live in tests/support/ and are registered here."""

pytest_plugins = [
    "tests.support.emulator",
    "tests.support.mosquitto",
    "tests.support.prometheus",
    "tests.support.agent",
    "tests.support.strict_skips",
]
