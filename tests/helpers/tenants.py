"""Fixtures that run our tenant servers (filled in by the tenant-server work)."""
