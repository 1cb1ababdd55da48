"""Fixtures for the mosquitto; filled in by its owner."""
