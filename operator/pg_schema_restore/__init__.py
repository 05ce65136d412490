"""pg-schema-restore: give one PostgreSQL schema back from the past."""
