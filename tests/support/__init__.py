"""Fixtures and helpers that start the real parts tests need (emulator, Mosquitto, Prometheus, agent)."""
