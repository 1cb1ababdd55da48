"""Fixtures for the prometheus; filled in by its owner."""
