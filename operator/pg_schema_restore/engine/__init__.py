"""The restore engine: seven idempotent phases over a JSON record; no kopf here."""
