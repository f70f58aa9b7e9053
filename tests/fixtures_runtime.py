"""Fixtures for runtime tests (owned by the runtime area)."""
