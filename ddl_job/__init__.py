"""Data plane: turn a restored copy into renamed schemas in production."""
