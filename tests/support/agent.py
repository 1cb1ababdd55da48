"""Fixtures for the agent; filled in by its owner."""
