"""Altitude-aware thermal alarm engine: pure rules and state, no I/O but its SQLite store."""
