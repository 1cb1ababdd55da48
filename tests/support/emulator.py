"""Fixtures for the emulator; filled in by its owner."""
