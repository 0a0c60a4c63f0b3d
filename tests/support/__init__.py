"""Helpers shared by tests that start real services (import as ``tests.support.<name>``)."""
