"""A contract-first multi-user todo API over PostgreSQL."""
