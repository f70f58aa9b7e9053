"""Fixtures for export tests (owned by the export area)."""
